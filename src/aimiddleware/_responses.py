"""The Responses API (``POST /v1/responses``) as the middlewares read and write it.

Its stream is typed events (``event: response.created`` ... ``response.output_text.delta`` ...
``response.completed``), each ``data`` an object with a ``type`` and a ``sequence_number``;
the final event's ``response`` carries ``usage`` ({input_tokens, output_tokens}), ``status``
and ``incomplete_details``. A non-streamed answer is that ``response`` object itself
(``"object": "response"``). Nothing here rewrites a request: the usage always comes.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Final

from .context import LLMRequest

if TYPE_CHECKING:
    from ._openai import LLMResponse
    from .errors import ErrorInfo

__all__ = [
    "RESPONSES_SUFFIX",
    "SequenceTracker",
    "error_event",
    "is_responses_path",
    "observe_responses",
    "parse_responses_request",
]

#: The route suffix of the Responses API's create call (any prefix: ``/v1``, ``/openai/v1``).
RESPONSES_SUFFIX: Final = "/responses"
# the statuses a response ends with; created/in_progress/queued say nothing about its end
_FINAL: Final = frozenset({"completed", "incomplete", "failed", "cancelled"})


def is_responses_path(path: str) -> bool:
    """Whether ``path`` creates a response (not ``GET /v1/responses/{id}`` and its kin).

    >>> is_responses_path("/v1/responses"), is_responses_path("/v1/responses/resp_1")
    (True, False)
    """
    return path.endswith(RESPONSES_SUFFIX)


def _chars(value: Any) -> int:
    """Characters the model reads in an ``input`` item, its content parts, or a tool call."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_chars(v) for v in value)
    if isinstance(value, dict):
        # message content / input_text parts, and function calls and their outputs
        return sum(_chars(value.get(k)) for k in ("content", "text", "arguments", "output"))
    return 0


def _messages(value: Any) -> int:
    """Messages the chat template writes for ``input`` (or ``instructions``): a string is one,
    each item of a list one."""
    return 1 if isinstance(value, str) else len(value) if isinstance(value, list) else 0


def parse_responses_request(body: dict[str, Any]) -> LLMRequest:
    """The facts of a Responses API request body (GenAI operation ``chat``, as the
    conventions map it; ``openai.api.type`` tells it apart).

    ``max_output_tokens`` is the output cap; the prompt is ``input`` (a string or message
    items with content parts), ``instructions`` and the tools' schemas, in as many messages
    of the chat template. The stream always ends with its usage, so ``include_usage`` is
    true: no request is rewritten to ask for it.

    >>> request = parse_responses_request({"model": "m", "input": "hi", "max_output_tokens": 9})
    >>> request.operation, request.max_tokens, request.include_usage
    ('chat', 9, True)
    >>> request.prompt_chars, request.prompt_messages
    (2, 1)
    """
    request = LLMRequest(operation="chat", include_usage=True)
    model = body.get("model")
    request.model = model if isinstance(model, str) else None
    request.stream = body.get("stream") is True
    limit = body.get("max_output_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
        request.max_tokens = limit
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            setattr(request, name, float(value))
    given = body.get("input")
    instructions = body.get("instructions")
    prompt = _chars(given) + _chars(instructions)
    # the messages the chat template wraps: a string input is one, each input item one (a
    # function call or its output too), the instructions a system message
    messages = _messages(given) + (_messages(instructions) if instructions else 0)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        prompt += len(json.dumps(tools, separators=(",", ":")))  # parsed from JSON: serialises
        messages += 1  # the tools' section
    request.prompt_chars = prompt
    request.prompt_messages = messages
    return request


def observe_responses(response: LLMResponse, payload: dict[str, Any]) -> bool:
    """Take in one Responses API payload (a stream event or a whole response object);
    ``False`` when ``payload`` is neither, for the Chat Completions reading to take it.

    A ``.delta`` event counts as a chunk (the first is the first token); the final event
    (``response.completed``, ``.incomplete``, ``.failed``) states usage and the finish
    reason, which is the response's ``incomplete_details.reason`` when it has one, else its
    ``status``; an ``error`` event or a failed response is an error.
    """
    kind = payload.get("type")
    if isinstance(kind, str):
        if kind.endswith(".delta"):
            response.chunks += 1
            return True
        if kind == "error":
            response.error = True
            return True
        inner = payload.get("response")
        if kind.startswith("response.") and isinstance(inner, dict):
            _observe_object(response, inner)
            return True
        return kind.startswith("response.")  # items and parts: nothing the middlewares read
    if payload.get("object") == "response":
        _observe_object(response, payload)
        return True
    return False


def _observe_object(response: LLMResponse, body: dict[str, Any]) -> None:
    if isinstance(body.get("id"), str):
        response.id = body["id"]
    if isinstance(body.get("model"), str):
        response.model = body["model"]
    usage = body.get("usage")
    if isinstance(usage, dict):
        for name in ("input_tokens", "output_tokens"):
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(response, name, value)
        from ._openai import cached_tokens  # imports this module: read once the call comes

        cached = cached_tokens(usage)
        if cached is not None:
            response.cached_tokens = cached
    status = body.get("status")
    if status in _FINAL:
        response.done = True
        details = body.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        response.finish_reasons.append(reason if isinstance(reason, str) else status)
    if status == "failed" or body.get("error"):
        response.error = True


# the last sequence number in a chunk of events: servers write `"sequence_number":N` or with
# a space; JSON string content escapes its quotes, so this cannot match inside a delta's text
_SEQUENCE: Final = re.compile(rb'"sequence_number"\s*:\s*(\d+)')


class SequenceTracker:
    """The next ``sequence_number`` of a Responses stream, read from the bytes as they pass
    (one reverse search per body message), for an error event the middleware adds at the end.

    >>> tracker = SequenceTracker()
    >>> tracker.feed(b'event: a\\ndata: {"type":"a","sequence_number":0}\\n\\n')
    >>> tracker.feed(b'data: {"sequence_number": 1, "delta": "x"}\\n\\n')
    >>> tracker.next
    2
    """

    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next = 0

    def feed(self, body: bytes) -> None:
        at = body.rfind(b'"sequence_number"')
        if at >= 0:
            found = _SEQUENCE.match(body, at)
            if found is not None:
                self.next = int(found.group(1)) + 1


def error_event(info: ErrorInfo, sequence_number: int, trace_id: str | None = None) -> bytes:
    """The Responses API's ``error`` event for a failure after its stream started: what the
    openai SDK yields as a ``ResponseErrorEvent``, the stream's last event.

    >>> from aimiddleware.errors import ErrorInfo
    >>> name, data = error_event(ErrorInfo(503, "busy"), 3).split(b"\\n")[:2]
    >>> name, json.loads(data.removeprefix(b"data: "))["sequence_number"]
    (b'event: error', 3)
    """
    payload: dict[str, Any] = {
        "type": "error",
        "code": info.code if info.code is not None else info.type,
        "message": info.message,
        "param": info.param,
        "sequence_number": sequence_number,
    }
    if trace_id:
        payload["trace_id"] = trace_id
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return b"event: error\ndata: " + data + b"\n\n"
