"""Plumbing every middleware shares: raw header access, a watched ``send``, JSON responses.

Everything here works on raw ASGI messages: headers are ``(bytes, bytes)`` pairs, names compared
case-insensitively (request header names are lower-case per the ASGI spec, response header names
written by apps may not be).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

# The request context (scope keys, accessors, the ASGI types) lives in aimiddleware.context:
# import it from there. These names stay importable from here for code written before the
# context had a module of its own (the tracing middleware, tests); nothing new should use them.
from .context import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    annotate,
    get_annotations,
    json_body,
    read_body,
    request_id,
    trace_id,
)

__all__ = [
    "EVENT_STREAM",
    "HOP_BY_HOP_HEADERS",
    "ASGIApp",
    "Message",
    "RawHeaders",
    "Receive",
    "ResponseWatcher",
    "Scope",
    "Send",
    "add_header",
    "annotate",
    "close_on_shutdown",
    "get_annotations",
    "get_header",
    "get_headers",
    "is_event_stream",
    "json_body",
    "media_type",
    "read_body",
    "remove_headers",
    "request_id",
    "send_json",
    "set_header",
    "trace_id",
]

RawHeaders = Iterable[Sequence[bytes]]

EVENT_STREAM: Final = "text/event-stream"
HOP_BY_HOP_HEADERS: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


# -- headers ---------------------------------------------------------------------------------


def get_header(headers: RawHeaders, name: bytes) -> bytes | None:
    """Return the first value of header ``name`` (lower-case bytes), or ``None``.

    >>> get_header([(b"Content-Type", b"text/plain")], b"content-type")
    b'text/plain'
    """
    for key, value in headers:
        if key == name or key.lower() == name:
            return value
    return None


def get_headers(headers: RawHeaders, name: bytes) -> list[bytes]:
    """Return every value of header ``name`` (lower-case bytes), in order."""
    return [value for key, value in headers if key == name or key.lower() == name]


def _header_list(message: Message) -> list[Any]:
    headers = message.get("headers")
    if not isinstance(headers, list):
        headers = list(headers or ())
        message["headers"] = headers
    return headers


def set_header(message: Message, name: bytes, value: bytes) -> None:
    """Replace every ``name`` header of an ``http.response.start`` message with one value."""
    headers = _header_list(message)
    headers[:] = [h for h in headers if h[0].lower() != name]
    headers.append((name, value))


def add_header(message: Message, name: bytes, value: bytes) -> None:
    """Append a header to an ``http.response.start`` message, keeping existing ones."""
    _header_list(message).append((name, value))


def remove_headers(message: Message, *names: bytes) -> None:
    """Drop every header whose lower-case name is in ``names``."""
    drop = set(names)
    headers = _header_list(message)
    headers[:] = [h for h in headers if h[0].lower() not in drop]


def media_type(value: bytes | None) -> str:
    """The lower-case media type of a Content-Type value, without parameters (``""`` if absent).

    >>> media_type(b"Text/Event-Stream; charset=utf-8")
    'text/event-stream'
    """
    if not value:
        return ""
    return value.split(b";", 1)[0].strip().lower().decode("latin-1")


def is_event_stream(headers: RawHeaders) -> bool:
    """Whether the headers declare a ``text/event-stream`` body (parameters ignored)."""
    return media_type(get_header(headers, b"content-type")) == EVENT_STREAM


# -- responses -------------------------------------------------------------------------------


class ResponseWatcher:
    """Wrap ``send`` and remember what went out: started, status, SSE or not, complete.

    One instance per request::

        watcher = ResponseWatcher(send)
        try:
            await app(scope, receive, watcher)
        except Exception:
            if not watcher.started:
                await send_json(send, 500, {...})
            raise
    """

    __slots__ = ("_send", "complete", "event_stream", "started", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.complete = False
        self.event_stream = False
        self.status = 0

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            self.status = int(message["status"])
            self.event_stream = is_event_stream(message.get("headers", ()))
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        await self._send(message)


async def send_json(
    send: Send,
    status: int,
    payload: Any,
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    content_type: bytes = b"application/json",
) -> None:
    """Send a whole JSON response (``http.response.start`` and one body message)."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("ascii")),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


# -- lifespan ---------------------------------------------------------------------------------


def close_on_shutdown(
    send: Send, close: Callable[[], Awaitable[None]], what: str, logger: logging.Logger
) -> Send:
    """The lifespan ``send`` that runs ``close`` (a middleware's ``aclose``) just before the
    server hears ``lifespan.shutdown.complete``: connections a middleware opened end with the
    app. A failure to close is logged (one line naming ``what``), never fails the shutdown.
    """

    async def _send(message: Message) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            try:
                await close()
            except Exception as exc:
                logger.warning("%s: closing on shutdown failed: %r", what, exc)
        await send(message)

    return _send
