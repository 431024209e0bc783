"""NormalizeMiddleware: one error shape for every error response, also after a stream started."""

from __future__ import annotations

from typing import Any

from .._config import build_options
from ..context import ASGIApp, Receive, Scope, Send, route_path, set_error_format
from ._exchange import Exchange
from ._options import NormalizeOptions
from ._routes import NormalizeRoute

__all__ = ["NormalizeMiddleware"]


class NormalizeMiddleware:
    """Give every error response one shape, and end failed streams with an error event.

    * Every response with status >= 400 (from the app, the framework, other middlewares or an
      unhandled exception) becomes the OpenAI envelope
      ``{"error": {"message", "type", "param", "code"}}``, or RFC 9457
      ``application/problem+json`` when the route is configured so or the caller's ``Accept``
      prefers it. ``Content-Length`` is recomputed; every other header (``WWW-Authenticate``,
      ``Retry-After``, ``RateLimit*``, ``x-ratelimit-*``, CORS ...) is kept.
    * A 5xx is rebuilt from its status alone (a generic message naming the request id): nothing
      of the body the app wrote reaches the client. An error the library wrote itself
      (``aimiddleware.errors.send_error``, e.g. the rate limiter's 503
      ``rate_limiter_unavailable``) keeps its type, code and message: as written when it is in
      the request's shape already, else written again in it.
    * On a matched route, the middlewares inside write their own errors in the route's shape
      (``aimiddleware.context.set_error_format``). An unhandled exception is logged once, with
      its traceback and the request id. Every response carries ``x-request-id``.
    * An exception after an event stream started ends the stream with
      ``data: {"error": {...}}`` and ``data: [DONE]`` on OpenAI routes (``event: error`` elsewhere),
      so clients raise instead of stopping silently.
    * 4xx JSON-RPC bodies (MCP endpoints) pass through unchanged, and so does every response of
      a ``format="passthrough"`` route.
    * Routes that declare a minimal representation return it for ``Prefer: return=minimal``.

    The status -> type/code table is in ``docs/normalize.md``.

    >>> mcp = NormalizeRoute("/mcp*", format="passthrough")
    >>> app = NormalizeMiddleware(app, routes=[mcp])  # doctest: +SKIP

    The options are those of :class:`NormalizeOptions` (``routes``, ``problem_type_base``,
    ``max_body``), given as keywords or as ``config``.
    """

    def __init__(
        self, app: ASGIApp, config: NormalizeOptions | None = None, **options: Any
    ) -> None:
        self.app = app
        self.config = build_options("NormalizeMiddleware", NormalizeOptions, config, options)

    @property
    def routes(self) -> tuple[NormalizeRoute, ...]:
        return tuple(self.config.routes)

    def __repr__(self) -> str:
        config = self.config
        return (
            f"NormalizeMiddleware(routes={list(config.routes)!r}, "
            f"problem_type_base={config.problem_type_base!r}, max_body={config.max_body!r})"
        )

    def route_for(self, path: str) -> NormalizeRoute | None:
        """The first configured route matching ``path``."""
        return self.config.route_for(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = self.config
        route = config.route_for(route_path(scope)) if config.routes else None
        if route is not None:
            # the middlewares inside write their own errors in the route's shape
            set_error_format(scope, route.format_or_openai, config.problem_type_base)
        exchange = Exchange(config, scope, send, route)
        try:
            await self.app(scope, receive, exchange.send)
        except Exception as exc:
            await exchange.failed(exc)
        else:
            if exchange.mode or not exchange.started:
                await exchange.finished()
