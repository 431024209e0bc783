"""The event-stream side of normalisation: what a response's start says (a stream or not), whole
events out, and the error event that ends a stream the app failed in."""

from __future__ import annotations

from typing import Final

from .._asgi import EVENT_STREAM, RawHeaders, media_type
from .._openai import llm_operation
from .._responses import SequenceTracker
from .._responses import error_event as responses_error_event
from .._sse import ends_event, last_event_end
from ..context import Message, Scope, Send, route_path, trace_id
from ..errors import ErrorInfo, render_error

__all__ = ["cut_events", "error_event", "is_stream", "scan_start"]

_MAX_PARTIAL_EVENT: Final = 64 * 1024
_STREAM_DONE: Final = b"data: [DONE]\n\n"


def scan_start(headers: RawHeaders) -> tuple[bytes, bool, bool]:
    """A response's Content-Type, whether it carries ``x-request-id`` and whether its body is
    encoded, in one pass over its headers (this runs for every response).

    >>> scan_start([(b"Content-Type", b"text/event-stream"), (b"x-request-id", b"r1")])
    (b'text/event-stream', True, False)
    """
    content_type = b""
    has_id = encoded = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-type":
            content_type = value
        elif lower == b"x-request-id":
            has_id = True
        elif lower == b"content-encoding":
            encoded = True
    return content_type, has_id, encoded


def is_stream(content_type: bytes) -> bool:
    """Whether a Content-Type value is ``text/event-stream`` (parsed only when it may be)."""
    return content_type[:17].lower() == b"text/event-stream" and media_type(content_type) == (
        EVENT_STREAM
    )


def cut_events(pending: bytes, body: bytes, more: bool) -> tuple[bytes | None, bytes]:
    """What of a stream's body goes out now (``None``: nothing yet), and what is held back.

    Whole events only: if the app dies mid-event, the error event that follows must not be
    glued to half an event (the client would dispatch the broken JSON first). A tail longer than
    any event is not event-shaped at all and is not held.

    >>> cut_events(b"", b"data: 1\\n\\ndata: 2", True)
    (b'data: 1\\n\\n', b'data: 2')
    """
    if pending:
        body = pending + body
    if more and not ends_event(body):
        cut = last_event_end(body)
        if cut < 0:
            if len(body) <= _MAX_PARTIAL_EVENT:
                return None, body
            cut = len(body)
        return body[:cut], body[cut:]
    return body, b""


class SequencedSend:
    """The client's ``send`` on a Responses API route (``Exchange`` swaps it in for the plain
    one), reading the ``sequence_number`` of what went out, so that an error event ending the
    stream is numbered after the last event the client got (a half event dropped before it is
    not counted)."""

    __slots__ = ("_send", "sequence")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.sequence = SequenceTracker()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            body = message.get("body")
            if body:
                self.sequence.feed(body)
        await self._send(message)


def error_event(scope: Scope, info: ErrorInfo, send: Send | None = None) -> bytes:
    """The event that ends a failed stream: ``data: {"error": ...}`` and ``data: [DONE]`` on the
    OpenAI streaming routes (the openai SDK raises ``APIError`` on a data chunk carrying
    ``"error"``), the Responses API's ``error`` event (``{"type": "error", "code", "message",
    "param", "sequence_number"}``, no ``[DONE]``) on its route, ``event: error`` elsewhere."""
    if isinstance(send, SequencedSend):
        return responses_error_event(info, send.sequence.next, trace_id(scope))
    _, payload = render_error(scope, info, format="openai")  # what the SDKs parse, always
    if llm_operation(route_path(scope)) in ("chat", "text_completion"):
        return b"data: " + payload + b"\n\n" + _STREAM_DONE
    return b"event: error\ndata: " + payload + b"\n\n"
