"""SSEMiddleware: keep ``text/event-stream`` responses streaming through proxies and middleware."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from .._asgi import get_header
from .._config import build_options
from ..context import ASGIApp, Receive, Scope, Send
from ._exchange import Exchange
from ._options import LastEventIdHook, SSEOptions

__all__ = ["LastEventIdHook", "SSEMiddleware", "SSEOptions"]

_MAX_EVENT_ID: Final = 1024


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

    The options are those of :class:`SSEOptions`, given as keywords or as ``config``.
    """

    def __init__(self, app: ASGIApp, config: SSEOptions | None = None, **options: Any) -> None:
        self.app = app
        self.config = build_options("SSEMiddleware", SSEOptions, config, options)

    def __repr__(self) -> str:
        config = self.config
        return (
            f"SSEMiddleware(heartbeat={config.heartbeat!r}, "
            f"heartbeat_comment={config.heartbeat_comment!r}, "
            f"send_timeout={config.send_timeout!r}, "
            f"cancel_on_disconnect={config.cancel_on_disconnect!r}, "
            f"last_event_id={'set' if config.last_event_id else None})"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        app = self.app
        config = self.config
        if config.last_event_id is not None:
            app = await self._resume(scope, config.last_event_id) or app
        exchange = Exchange(config, scope, receive, send)
        try:
            await app(scope, exchange.receive, exchange.send)
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
