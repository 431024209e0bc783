"""A Responses API stand-in (``POST /v1/responses``), JSON and typed SSE events, without a model.

:func:`response_object` is the answer a server gives (``"object": "response"``);
:func:`response_events` the stream of it as the openai SDK reads it (``event: <type>``, a
``sequence_number`` on every event, ``usage`` in the final event); :func:`responses_app`
serves either, counting its runs, and can fail mid-stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .openai_app import Counter

__all__ = ["RESPONSES_PATH", "event", "response_events", "response_object", "responses_app"]

#: The route of :func:`responses_app`.
RESPONSES_PATH = "/v1/responses"


def response_object(
    text: str,
    *,
    id: str = "resp_test",
    model: str = "test-model",
    status: str = "completed",
    usage: tuple[int, int] | None = (5, 3),
    incomplete: str | None = None,
) -> dict[str, Any]:
    """A response as the Responses API states it; ``status`` ``in_progress`` has no output."""
    done = status != "in_progress"
    message = {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "status": "completed" if status == "completed" else "incomplete",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    return {
        "id": id,
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": [message] if done else [],
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": None
        if usage is None or not done
        else {
            "input_tokens": usage[0],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage[1],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage[0] + usage[1],
        },
    }


def event(kind: str, sequence: int, **fields: Any) -> bytes:
    """One typed event as the Responses API frames it: ``event: <type>`` then its data."""
    data = json.dumps({"type": kind, "sequence_number": sequence, **fields})
    return f"event: {kind}\ndata: {data}\n\n".encode()


def response_events(
    deltas: Sequence[str],
    *,
    id: str = "resp_test",
    model: str = "test-model",
    usage: tuple[int, int] | None = (5, 3),
    incomplete: str | None = None,
) -> list[bytes]:
    """The whole stream of one answer: created, in progress, the item and its part, one
    ``response.output_text.delta`` per delta, the dones, then ``response.completed`` (or
    ``response.incomplete`` when ``incomplete`` gives the reason)."""
    text = "".join(deltas)
    status = "incomplete" if incomplete else "completed"
    start = response_object("", id=id, model=model, status="in_progress")
    final = response_object(
        text, id=id, model=model, status=status, usage=usage, incomplete=incomplete
    )
    message = final["output"][0]
    where = {"item_id": "msg_test", "output_index": 0, "content_index": 0}
    frames: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": start}),
        ("response.in_progress", {"response": start}),
        ("response.output_item.added", {"output_index": 0, "item": {**message, "content": []}}),
        (
            "response.content_part.added",
            {**where, "part": {"type": "output_text", "text": "", "annotations": []}},
        ),
        *[("response.output_text.delta", {**where, "delta": d, "logprobs": []}) for d in deltas],
        ("response.output_text.done", {**where, "text": text, "logprobs": []}),
        ("response.content_part.done", {**where, "part": message["content"][0]}),
        ("response.output_item.done", {"output_index": 0, "item": message}),
        (f"response.{status}", {"response": final}),
    ]
    return [event(kind, i, **fields) for i, (kind, fields) in enumerate(frames)]


def responses_app(
    counter: Counter | None = None,
    *,
    deltas: Sequence[str] = ("Hel", "lo", "!"),
    usage: tuple[int, int] | None = (5, 3),
    fail_after: int | None = None,
    split: bool = False,
    received: list[bytes] | None = None,
) -> Starlette:
    """``POST /v1/responses``: the stream of :func:`response_events` when the body says
    ``"stream": true``, else the response object. ``fail_after`` raises after that many
    events (half of the next one already sent when ``split``); ``split`` sends every event in
    two body messages, cut inside its data. Each request body is appended to ``received``."""
    runs = counter if counter is not None else Counter()

    async def create(request: Request) -> Response:
        raw = await request.body()
        if received is not None:
            received.append(raw)
        payload = json.loads(raw)
        runs.runs += 1
        runs.started.set()
        response_id = f"resp_{runs.runs}"
        if not payload.get("stream"):
            text = "".join(deltas)
            return JSONResponse(response_object(text, id=response_id, usage=usage))
        frames = response_events(deltas, id=response_id, usage=usage)

        async def body() -> AsyncIterator[bytes]:
            for i, frame in enumerate(frames):
                if fail_after is not None and i == fail_after:
                    if split:
                        yield frame[: len(frame) // 2]
                    raise RuntimeError("the model crashed mid-stream")
                if split:
                    yield frame[: len(frame) // 2]
                    yield frame[len(frame) // 2 :]
                else:
                    yield frame

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route(RESPONSES_PATH, create, methods=["POST"])])
