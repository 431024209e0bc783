"""Plumbing every middleware shares: raw header access, a watched ``send``, a shared request body.

Everything here works on raw ASGI messages: headers are ``(bytes, bytes)`` pairs, names compared
case-insensitively (request header names are lower-case per the ASGI spec, response header names
written by apps may not be).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any, Final

from ._paths import route_path

__all__ = [
    "EVENT_STREAM",
    "HOP_BY_HOP_HEADERS",
    "TRACE_ID_KEY",
    "ASGIApp",
    "ClientDisconnected",
    "Message",
    "RawHeaders",
    "Receive",
    "RequestBodyTooLarge",
    "ResponseWatcher",
    "Scope",
    "Send",
    "add_header",
    "annotate",
    "get_annotations",
    "get_header",
    "get_headers",
    "is_event_stream",
    "json_body",
    "media_type",
    "read_body",
    "remove_headers",
    "replace_body",
    "replay_receive",
    "request_id",
    "route_path",
    "send_json",
    "set_header",
    "trace_id",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
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


class ClientDisconnected(Exception):  # noqa: N818 (an event, not an error of ours)
    """The client went away (``http.disconnect``) before the request body was read."""


class RequestBodyTooLarge(Exception):  # noqa: N818
    """The request body grew past ``limit`` bytes while it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


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


# -- request body ----------------------------------------------------------------------------

_BODY_KEY: Final = "aimiddleware.body"
_JSON_KEY: Final = "aimiddleware.json"
_NOT_JSON: Final = object()


def replay_receive(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` as one ``http.request``, then defers to ``receive``.

    Later calls reach the real ``receive``, so the app still sees ``http.disconnect``.
    """
    pending = True

    async def _receive() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return _receive


async def read_body(
    scope: Scope, receive: Receive, *, limit: int | None = None
) -> tuple[bytes, Receive]:
    """Read the whole request body once per request and return it with a replaying ``receive``.

    The first middleware that needs the body reads it and keeps it in the scope; later ones (and
    the app, through the returned ``receive``) get the same bytes without reading or copying again.
    Always pass the returned ``receive`` downstream.

    Each caller's ``limit`` holds whoever read first: a body an outer middleware already
    read with a larger limit (or none) is still refused here when it is over ``limit``.

    :raises RequestBodyTooLarge: the body grew past ``limit`` bytes (read stops there).
    :raises ClientDisconnected: the client left before the body was complete.
    """
    cached = scope.get(_BODY_KEY)
    if cached is not None:
        if limit is not None and len(cached) > limit:
            raise RequestBodyTooLarge(limit)
        return cached, receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if limit is not None and size > limit:
                raise RequestBodyTooLarge(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    scope[_BODY_KEY] = body
    return body, replay_receive(body, receive)


async def replace_body(receive: Receive, body: bytes) -> Receive:
    """Give the app ``body`` instead of the request body read so far.

    ``receive`` must be the one :func:`read_body` returned (its replayed body is consumed here,
    without I/O). The shared body in the scope stays the request as the client sent it: outer
    middlewares fingerprint, log and trace that one, possibly after the app has run. Returns
    the ``receive`` to pass downstream.
    """
    message = await receive()
    if message["type"] != "http.request":  # pragma: no cover (read_body's contract)
        raise RuntimeError("replace_body needs the receive that read_body returned")
    return replay_receive(body, receive)


def json_body(scope: Scope) -> Any:
    """The request body parsed as JSON, parsed at most once per request.

    Returns ``None`` when the body was not read yet (see :func:`read_body`), is not JSON, or is
    not valid JSON. Callers must treat the result as read-only: it is shared.
    """
    cached = scope.get(_JSON_KEY)
    if cached is not None:
        return None if cached is _NOT_JSON else cached
    body = scope.get(_BODY_KEY)
    if body is None:
        return None
    try:
        parsed = json.loads(body) if body else _NOT_JSON
    except (ValueError, UnicodeDecodeError, RecursionError):
        parsed = _NOT_JSON
    scope[_JSON_KEY] = parsed
    return None if parsed is _NOT_JSON else parsed


# -- per-request facts shared between middlewares -------------------------------------------
#
# Middlewares of one stack share facts through keys in the ASGI scope (never through `self`):
# the outermost one that needs a fact creates it, inner ones read or add to it. Scopes are
# passed down by reference (or shallow-copied), so a dict created outside is seen inside.

_ATTRIBUTES_KEY: Final = "aimiddleware.attributes"
_REQUEST_ID_KEY: Final = "aimiddleware.request_id"
TRACE_ID_KEY: Final = "aimiddleware.trace_id"
_MAX_REQUEST_ID = 128


def annotate(scope: Scope, name: str, value: str | int | float | bool) -> None:
    """Record a decision of a middleware on the request, e.g.
    ``annotate(scope, "aimiddleware.idempotency.outcome", "replayed")``.

    Names live under ``aimiddleware.<middleware>.``; the tracing middleware copies them onto the
    request's span and the access log. Values must never contain secrets.
    """
    attributes = scope.get(_ATTRIBUTES_KEY)
    if attributes is None:
        attributes = scope[_ATTRIBUTES_KEY] = {}
    attributes[name] = value


def get_annotations(scope: Scope) -> dict[str, str | int | float | bool]:
    """The decisions recorded with :func:`annotate` so far (created empty if none).

    An outer middleware calls this before calling the app, so that it holds the same dict the
    inner middlewares write into.
    """
    attributes = scope.get(_ATTRIBUTES_KEY)
    if attributes is None:
        attributes = scope[_ATTRIBUTES_KEY] = {}
    return attributes


def request_id(scope: Scope) -> str:
    """The request id: the caller's ``x-request-id`` when it is sane, else a new random one.

    Computed once per request and shared by every middleware (error bodies, logs, spans).
    """
    cached = scope.get(_REQUEST_ID_KEY)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    raw = get_header(scope.get("headers", ()), b"x-request-id")
    value = None
    if raw and len(raw) <= _MAX_REQUEST_ID and all(0x21 <= b <= 0x7E for b in raw):
        value = raw.decode("ascii")
    if value is None:
        # 128 random bits as 32 hex digits, like uuid4().hex but without building a UUID (a
        # quarter of the cost, on every request that arrives without an id)
        value = f"req_{os.urandom(16).hex()}"
    scope[_REQUEST_ID_KEY] = value
    return value


def trace_id(scope: Scope) -> str | None:
    """The W3C trace id (32 hex digits) the tracing middleware put on this request, if any."""
    return scope.get(TRACE_ID_KEY)
