"""The baseline every ratio is taken against, and the cheapest peer: one no-op
BaseHTTPMiddleware around the same endpoint."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .apps import ASGIApp, Config, bare_app, chat_completions


def _noop_base_http_middleware() -> ASGIApp:
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    class Noop(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: Any) -> Response:
            return await call_next(request)  # type: ignore[no-any-return]

    return Starlette(
        routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"])],
        middleware=[Middleware(Noop)],
    )


CONFIGS = [
    Config("bare", bare_app, description="bare Starlette, the baseline"),
    Config(
        "peer:base-http-noop",
        _noop_base_http_middleware,
        group="peers",
        description="one no-op BaseHTTPMiddleware",
    ),
]
