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
    ``body`` replaces the default request body (the payload-size series sends 1 KB to 1 MB).
    ``path`` is the request path.
    ``connections`` overrides the harness's connection count (long streams need fewer to
    complete enough requests in a short measurement).
    ``fresh_keys`` says that every request carries a new ``Idempotency-Key`` (its ``lua`` sends
    them; the in-process drivers add them).
    """

    name: str
    factory: Callable[[], ASGIApp]
    group: str = "baseline"
    headers: dict[str, str] = field(default_factory=dict)
    lua: str | None = None
    needs: tuple[str, ...] = ()
    description: str = ""
    body: bytes | None = None
    path: str = "/v1/chat/completions"
    connections: int | None = None
    fresh_keys: bool = False

    @property
    def request_body(self) -> bytes:
        return REQUEST_BODY if self.body is None else self.body


CONFIGS: dict[str, Config] = {}
# configurations that cannot be built here (a middleware or a peer package is missing), with
# the reason; the harness lists them in the report instead of measuring them
UNAVAILABLE: dict[str, tuple[Config, str]] = {}


# names registered as defaults (the peers in configs_stack): a middleware's own configuration
# module may register the same name, whichever is imported first, and its definition wins
DEFAULTS: set[str] = set()


def config(cfg: Config, *, default: bool = False) -> Config:
    """Register ``cfg``; a name can be registered once, except over a ``default`` one."""
    if cfg.name in CONFIGS and cfg.name not in DEFAULTS:
        if default:
            return CONFIGS[cfg.name]
        raise ValueError(f"benchmark configuration {cfg.name!r} registered twice")
    if cfg.name in CONFIGS and default:
        raise ValueError(f"benchmark configuration {cfg.name!r} registered twice as a default")
    DEFAULTS.discard(cfg.name)
    UNAVAILABLE.pop(cfg.name, None)
    CONFIGS[cfg.name] = cfg
    if default:
        DEFAULTS.add(cfg.name)
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

# each middleware's configurations live in their own module, registered on import; configs_stack
# also registers the peers and the stack, the peers as defaults that these modules may redefine
from . import (  # noqa: E402
    configs_guard,  # noqa: F401
    configs_idempotency,  # noqa: F401
    configs_oauth,  # noqa: F401
    configs_ratelimit,  # noqa: F401
    configs_sse_normalize,  # noqa: F401
    configs_stack,  # noqa: F401
    configs_tracing,  # noqa: F401
    mcp_guards,  # noqa: F401
)
