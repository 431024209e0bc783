"""The typed SSE events of a streamed response (``POST /v1/responses`` with ``stream: true``).

Each event is ``event: <type>`` then ``data: <json>`` whose ``type`` repeats it and whose
``sequence_number`` counts from 0. The order is the one the ``openai`` SDK's
``responses.stream()`` accumulates: ``response.created``, ``response.in_progress``; per output
item ``response.output_item.added``, for a message ``response.content_part.added``,
``response.output_text.delta``..., ``response.output_text.done``,
``response.content_part.done``, for a function call ``response.function_call_arguments.delta``...
and ``.done``; ``response.output_item.done``; then ``response.completed``, or
``response.incomplete`` when ``max_output_tokens`` cut the answer. A failure after the stream
began (the deadline, the store) is an ``error`` event, then ``response.failed``.

The text comes from the chat path's deltas (chat_stream.py), so a call is held back exactly as
a streamed chat completion holds it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .chat_stream import deltas
from .engine import GenerationTimeout
from .errors import APIError, generation_timeout
from .responses_items import (
    Draft,
    function_call_item,
    message_item,
    new_id,
    text_part,
    usage,
)
from .runs import Run
from .tools import ToolPlan

# what a finished response is handed to before its last event: it stores it (or raises APIError)
Keep = Callable[[dict[str, Any]], Awaitable[None]]


class _Events:
    """The stream's frames, numbered, and the output items as they stand."""

    def __init__(self, draft: Draft) -> None:
        self.draft = draft
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.message: dict[str, Any] | None = None  # the open message item
        self.call: dict[str, Any] | None = None  # the open function call item

    def frame(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        payload = json.dumps(data, separators=(",", ":"))
        return f"event: {kind}\ndata: {payload}\n\n".encode()

    def lifecycle(self, kind: str, response: dict[str, Any]) -> bytes:
        return self.frame(kind, response=response)

    def _where(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": item["id"], "output_index": len(self.output) - 1}

    def open_message(self) -> list[bytes]:
        item = message_item(new_id("msg"), None, "in_progress")
        self.output.append(item)
        self.message = item
        return [
            self.frame("response.output_item.added", output_index=len(self.output) - 1, item=item),
            self.frame(
                "response.content_part.added",
                **self._where(item),
                content_index=0,
                part=text_part(""),
            ),
        ]

    def text(self, delta: str) -> list[bytes]:
        frames = self.open_message() if self.message is None else []
        assert self.message is not None
        self.message["content"] = [text_part(self._text() + delta)]
        where = self._where(self.message)
        frames.append(
            self.frame(
                "response.output_text.delta", **where, content_index=0, delta=delta, logprobs=[]
            )
        )
        return frames

    def _text(self) -> str:
        content = self.message["content"] if self.message else []
        return str(content[0]["text"]) if content else ""

    def close_message(self, status: str) -> list[bytes]:
        item = self.message
        if item is None:
            return []
        text, where = self._text(), self._where(item)
        item.update(status=status, content=[text_part(text)])
        self.message = None
        return [
            self.frame(
                "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
            ),
            self.frame(
                "response.content_part.done", **where, content_index=0, part=text_part(text)
            ),
            self.frame("response.output_item.done", output_index=where["output_index"], item=item),
        ]

    def open_call(self, call: dict[str, Any]) -> list[bytes]:
        frames = self.close_call()
        item = function_call_item(call, "in_progress")
        self.output.append(item)
        self.call = item
        index = len(self.output) - 1
        frames.append(self.frame("response.output_item.added", output_index=index, item=item))
        return frames

    def arguments(self, delta: str) -> list[bytes]:
        assert self.call is not None
        self.call["arguments"] += delta
        return [
            self.frame(
                "response.function_call_arguments.delta", **self._where(self.call), delta=delta
            )
        ]

    def close_call(self) -> list[bytes]:
        item = self.call
        if item is None:
            return []
        item["status"] = "completed"
        self.call = None
        where = self._where(item)
        return [
            self.frame(
                "response.function_call_arguments.done", **where, arguments=item["arguments"]
            ),
            self.frame("response.output_item.done", output_index=where["output_index"], item=item),
        ]

    def failed(self, error: APIError) -> list[bytes]:
        info = error.info
        event = self.frame("error", code=info.code, message=info.message, param=info.param)
        failure = {"code": "server_error", "message": info.message}
        response = self.draft.state("failed", self.output, error=failure)
        return [event, self.lifecycle("response.failed", response)]


async def response_events(
    draft: Draft, run: Run, plan: ToolPlan, keep: Keep
) -> AsyncIterator[bytes]:
    """The events of ``run``'s answer (its first chunk already primed); ``keep`` receives the
    finished response before the last event goes out."""
    events = _Events(draft)
    yield events.lifecycle("response.created", draft.state("in_progress", []))
    yield events.lifecycle("response.in_progress", draft.state("in_progress", []))
    finish = "stop"
    try:
        async for body, finished, _ in deltas(run, plan, None):
            finish = finished or finish
            for frame in _frames(events, body):
                yield frame
    except GenerationTimeout:
        for frame in events.failed(generation_timeout()):
            yield frame
        return
    if not events.output:  # an empty answer is still one (empty) message, as when not streamed
        for frame in events.open_message():
            yield frame
    status = "incomplete" if finish == "length" else "completed"
    for frame in [*events.close_message(status), *events.close_call()]:
        yield frame
    response = draft.finished(
        events.output, finish, usage(run.prompt_tokens, run.completion_tokens)
    )
    try:
        await keep(response)
    except APIError as exc:
        for frame in events.failed(exc):
            yield frame
        return
    yield events.lifecycle(f"response.{response['status']}", response)


def _frames(events: _Events, delta: dict[str, Any]) -> list[bytes]:
    """The events of one chat delta: text, a call opening, or a fragment of its arguments."""
    frames: list[bytes] = []
    if delta.get("content"):
        frames += events.text(delta["content"])
    for call in delta.get("tool_calls") or []:
        function = call["function"]
        if "id" in call:
            opened = {"id": call["id"], "function": {"name": function["name"], "arguments": ""}}
            frames += events.open_call(opened)
        if function.get("arguments"):
            frames += events.arguments(function["arguments"])
    return frames
