"""The benchmark configurations: one trivial OpenAI-shaped JSON endpoint, wrapped differently.

Every configuration is a name and a factory returning an ASGI app. Each middleware registers its
own configurations here with :func:`config`; the harness measures them interleaved with ``bare``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ASGIApp = Any

REQUEST_BODY = json.dumps(
    {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 16,
    }
).encode()

RESPONSE_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "SmolLM2-135M-Instruct",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }
).encode()


async def chat_completions(request: Request) -> Response:
    await request.body()  # a real endpoint reads its body
    return Response(RESPONSE_BODY, media_type="application/json")


def bare_app() -> ASGIApp:
    """Bare Starlette: the baseline every ratio is taken against."""
    return Starlette(routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"])])


@dataclass(frozen=True)
class Config:
    """One measured configuration.

    ``headers`` are sent with every request; ``lua`` is an optional wrk script body that replaces
    the default request (for per-request headers such as fresh idempotency keys).
    ``needs`` names services the harness must start first (``"redis"``).
    """

    name: str
    factory: Callable[[], ASGIApp]
    group: str = "baseline"
    headers: dict[str, str] = field(default_factory=dict)
    lua: str | None = None
    needs: tuple[str, ...] = ()
    description: str = ""


CONFIGS: dict[str, Config] = {}


def config(cfg: Config) -> Config:
    if cfg.name in CONFIGS:
        raise ValueError(f"benchmark configuration {cfg.name!r} registered twice")
    CONFIGS[cfg.name] = cfg
    return cfg


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


config(Config("bare", bare_app, description="bare Starlette, the baseline"))
config(
    Config(
        "peer:base-http-noop",
        _noop_base_http_middleware,
        group="peers",
        description="one no-op BaseHTTPMiddleware",
    )
)

# each middleware's configurations live in their own module, registered on import
from . import (  # noqa: E402, F401
    configs_idempotency,
    configs_oauth,
    configs_ratelimit,
    configs_sse_normalize,
    configs_tracing,
    mcp_guards,
)
