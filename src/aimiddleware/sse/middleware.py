"""SSEMiddleware: keep ``text/event-stream`` responses streaming through proxies and middleware."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Final

from .._asgi import ASGIApp, Message, Receive, Scope, Send, get_header
from ..exceptions import ConfigurationError
from ._exchange import Exchange

__all__ = ["LastEventIdHook", "SSEMiddleware"]

LastEventIdHook = Callable[[Scope, str], Awaitable[ASGIApp | None]]
"""``async hook(scope, last_event_id)``: an ASGI app that resumes the stream, or ``None``."""

_MAX_EVENT_ID: Final = 1024


def _seconds(name: str, value: float | None, *, allow_none: bool = True) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise ConfigurationError(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancelled(inner) for inner in exc.exceptions)
    return isinstance(exc, asyncio.CancelledError)


class SSEMiddleware:
    """Keep event streams flowing: stream headers, comment heartbeats, disconnect propagation.

    For every response whose Content-Type is ``text/event-stream``:

    * headers go out at once with ``Cache-Control: no-cache, no-transform`` (a stricter value of
      the app is kept), ``X-Accel-Buffering: no``, no ``Content-Length``, no ``Content-Encoding``
      (a gzip/deflate stream from an inner compressor is decoded on the fly), and no
      connection-specific headers on HTTP/2;
    * after ``heartbeat`` seconds without a byte from the app, a comment line
      (``: keep-alive``) goes out between two events; never ``id:``, ``retry:`` or an empty
      ``data:``, which OpenAI-compatible clients would try to parse as a chunk;
    * an ``http.disconnect`` from the client cancels the app (its generation stops), and with
      ``send_timeout`` a client that stops reading for that long is dropped.

    Other responses pass through untouched. Place it inside the normalisation middleware and
    outside idempotency (heartbeats are never recorded) and any compression middleware should be
    outside it (see ``docs/sse.md``).

    >>> app = SSEMiddleware(app, heartbeat=15.0, send_timeout=30.0)  # doctest: +SKIP

    :param heartbeat: seconds of silence before a heartbeat comment; ``None`` disables them.
    :param heartbeat_comment: the comment text (no line breaks).
    :param send_timeout: seconds one write of the stream may block before the client is dropped;
        ``None`` (default) waits as long as the server does.
    :param cancel_on_disconnect: cancel the app when the client disconnects mid-stream.
    :param last_event_id: an optional ``async hook(scope, last_event_id)`` called when a request
        carries a ``Last-Event-ID`` header; it returns an ASGI app that serves the resumed stream
        (through this middleware like any other), or ``None`` to let the app handle the request.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        heartbeat: float | None = 15.0,
        heartbeat_comment: str = "keep-alive",
        send_timeout: float | None = None,
        cancel_on_disconnect: bool = True,
        last_event_id: LastEventIdHook | None = None,
    ) -> None:
        self.app = app
        self.heartbeat = _seconds("heartbeat", heartbeat)
        self.send_timeout = _seconds("send_timeout", send_timeout)
        if not isinstance(heartbeat_comment, str) or any(c in heartbeat_comment for c in "\r\n\0"):
            raise ConfigurationError("heartbeat_comment must be one line of text")
        if not isinstance(cancel_on_disconnect, bool):
            raise ConfigurationError("cancel_on_disconnect must be a bool")
        if last_event_id is not None and not callable(last_event_id):
            raise ConfigurationError("last_event_id must be an async callable or None")
        self.heartbeat_comment = heartbeat_comment
        self.cancel_on_disconnect = cancel_on_disconnect
        self.last_event_id = last_event_id
        line = f": {heartbeat_comment}\n\n" if heartbeat_comment else ":\n\n"
        self._heartbeat_message: Message = {
            "type": "http.response.body",
            "body": line.encode("utf-8"),
            "more_body": True,
        }

    def __repr__(self) -> str:
        return (
            f"SSEMiddleware(heartbeat={self.heartbeat!r}, "
            f"heartbeat_comment={self.heartbeat_comment!r}, send_timeout={self.send_timeout!r}, "
            f"cancel_on_disconnect={self.cancel_on_disconnect!r}, "
            f"last_event_id={'set' if self.last_event_id else None})"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        app = self.app
        if self.last_event_id is not None:
            app = await self._resume(scope, self.last_event_id) or app
        exchange = Exchange(self, scope, receive, send)
        try:
            await app(scope, exchange.inbox.receive, exchange.send)
        except BaseException as exc:
            exchange.app_running = False
            # the app's task group may hand our cancellation back wrapped in a group
            if not _only_cancelled(exc) or not exchange.absorb_cancel():
                raise
        else:
            exchange.app_running = False
            if exchange.cancel_requested:
                exchange.absorb_cancel()  # an app that swallowed the cancellation
        finally:
            exchange.app_running = False
            if exchange.stream:
                await exchange.close()

    @staticmethod
    async def _resume(scope: Scope, hook: LastEventIdHook) -> ASGIApp | None:
        raw = get_header(scope.get("headers", ()), b"last-event-id")
        if raw is None or len(raw) > _MAX_EVENT_ID or any(b in raw for b in b"\r\n\0"):
            return None
        return await hook(scope, raw.decode("utf-8", "replace"))
