"""NormalizeMiddleware: one error shape for every error response, also after a stream started."""

from __future__ import annotations

from collections.abc import Sequence

from .._asgi import ASGIApp, Receive, Scope, Send
from ..exceptions import ConfigurationError
from ._exchange import Exchange
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
      of the body the app wrote reaches the client. An unhandled exception is logged once, with
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

    :param routes: per-route choices, first match wins (see :class:`NormalizeRoute`).
    :param problem_type_base: a URI prefix for RFC 9457 ``type`` (``<base><code>``); without
        it ``type`` is ``about:blank``.
    :param max_body: the largest error (or minimal-eligible) body read to rewrite it; larger
        error bodies are replaced using the status alone, larger success bodies are sent whole.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Sequence[NormalizeRoute] = (),
        problem_type_base: str | None = None,
        max_body: int = 1024 * 1024,
    ) -> None:
        self.app = app
        if isinstance(routes, NormalizeRoute) or not all(
            isinstance(r, NormalizeRoute) for r in routes
        ):
            raise ConfigurationError("routes must be a sequence of NormalizeRoute")
        if problem_type_base is not None and not isinstance(problem_type_base, str):
            raise ConfigurationError("problem_type_base must be a URI prefix string")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1024:
            raise ConfigurationError("max_body must be an int of at least 1024 bytes")
        self.routes = tuple(routes)
        self.problem_type_base = problem_type_base
        self.max_body = max_body

    def __repr__(self) -> str:
        return (
            f"NormalizeMiddleware(routes={list(self.routes)!r}, "
            f"problem_type_base={self.problem_type_base!r}, max_body={self.max_body!r})"
        )

    def route_for(self, path: str) -> NormalizeRoute | None:
        """The first configured route matching ``path``."""
        for route in self.routes:
            if route.matches(path):
                return route
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = Exchange(self, scope, send)
        try:
            await self.app(scope, receive, exchange.send)
        except Exception as exc:
            await exchange.failed(exc)
        else:
            if exchange.mode or not exchange.started:
                await exchange.finished()
