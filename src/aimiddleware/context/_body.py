"""The request body, read once per request and shared by every middleware of the stack."""

from __future__ import annotations

from typing import Any

from .._json import loads
from ._facts import ABSENT, BODY_KEY, JSON_KEY, Message, Receive, Scope

__all__ = [
    "ClientDisconnected",
    "RequestBodyTooLarge",
    "json_body",
    "read_body",
    "replace_body",
    "replay_receive",
]


class ClientDisconnected(Exception):  # noqa: N818 (an event, not an error of ours)
    """The client went away (``http.disconnect``) before the request body was read."""


class RequestBodyTooLarge(Exception):  # noqa: N818
    """The request body grew past ``limit`` bytes while it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


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
    the app, through the returned ``receive``) get the same bytes without reading or copying
    again. Always pass the returned ``receive`` downstream.

    Each caller's ``limit`` holds whoever read first: a body an outer middleware already
    read with a larger limit (or none) is still refused here when it is over ``limit``.

    :raises RequestBodyTooLarge: the body grew past ``limit`` bytes (read stops there).
    :raises ClientDisconnected: the client left before the body was complete.
    """
    cached = scope.get(BODY_KEY)
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
    scope[BODY_KEY] = body
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
    cached = scope.get(JSON_KEY)
    if cached is not None:
        return None if cached is ABSENT else cached
    body = scope.get(BODY_KEY)
    if body is None:
        return None
    try:
        parsed = loads(body) if body else ABSENT
    except (ValueError, UnicodeDecodeError, RecursionError):
        parsed = ABSENT
    scope[JSON_KEY] = parsed
    return None if parsed is ABSENT else parsed
