"""The full stack and the peers, alone and combined into a peer stack.

The full stack is the six middlewares in the documented order (docs/architecture.md), on the
memory stores and on Redis. Where a middleware cannot be imported yet, its configurations are
listed as unavailable with the import error (:mod:`benchmarks.registry`) instead of being
measured; the peers are fallbacks, replaced by a middleware module's own configuration of the
same name.

The constructor options of the full stack live in one place, :func:`build_stack` under
"STACK OPTIONS" below.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .apps import REQUEST_BODY, ASGIApp, Config, bare_app, chat_completions, sdk_providers

MODEL = "SmolLM2-135M-Instruct"
# not a secret: a fixed benchmark key, the same in the load generator and the server
API_KEY = "sk-bench.benchmark-secret-that-is-long-enough-0123456789"
RESOURCE = "https://bench.local"
STACK_HEADERS = {"Authorization": f"Bearer {API_KEY}"}
# no rate limit is ever reached in a measurement: the figures are the cost of checking
UNREACHED_REQUESTS = "100000000/minute"
UNREACHED_TOKENS = "100000000000/minute"


# -- STACK OPTIONS ------------------------------------------------------------------------
# The one place that names the six middlewares' constructor options. Adjust here when an
# option changes; nothing else in the benchmarks constructs them.


def build_stack(app: ASGIApp, *, store_url: str, sdk: bool = True) -> ASGIApp:
    """``app`` inside the six middlewares, outermost first: Tracing, Normalize, SSE, OAuth,
    Idempotency, RateLimit. ``store_url`` is ``memory://`` or a Redis URL. Without ``sdk``,
    tracing runs on the OpenTelemetry API alone (no SDK configured): the stack's own cost."""
    from aimiddleware.idempotency import IdempotencyMiddleware
    from aimiddleware.normalize import NormalizeMiddleware
    from aimiddleware.oauth import APIKey, APIKeys, OAuthMiddleware, ScopeRule
    from aimiddleware.ratelimit import RateLimitMiddleware, Tier
    from aimiddleware.sse import SSEMiddleware
    from aimiddleware.tracing import TracingMiddleware

    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    tier = Tier("bench", requests=UNREACHED_REQUESTS, tokens=UNREACHED_TOKENS, concurrency=4096)
    app = RateLimitMiddleware(
        app,
        tiers=[tier],
        default_tier="bench",
        store=store_url,
        key_prefix=f"aimw:rl:{prefix}",
    )
    idem_store = store_url if store_url.startswith("memory") else f"{store_url}?prefix={prefix}"
    app = IdempotencyMiddleware(app, store=idem_store)
    key_hash = "sha256:" + hashlib.sha256(API_KEY.encode()).hexdigest()
    app = OAuthMiddleware(
        app,
        resource=RESOURCE,
        api_keys=APIKeys([APIKey(id="bench", key_hash=key_hash, scopes=["chat"], tier="bench")]),
        rules=[ScopeRule("/v1/chat/completions", ["chat"], methods=["POST"])],
    )
    app = SSEMiddleware(app, heartbeat=15.0)
    app = NormalizeMiddleware(app)
    if sdk:
        tracer_provider, meter_provider = sdk_providers()
    else:
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.trace import NoOpTracerProvider

        tracer_provider, meter_provider = NoOpTracerProvider(), NoOpMeterProvider()
    return TracingMiddleware(app, tracer_provider=tracer_provider, meter_provider=meter_provider)


STACK_MODULES = (
    "aimiddleware.tracing:TracingMiddleware",
    "aimiddleware.normalize:NormalizeMiddleware",
    "aimiddleware.sse:SSEMiddleware",
    "aimiddleware.oauth:OAuthMiddleware",
    "aimiddleware.idempotency:IdempotencyMiddleware",
    "aimiddleware.ratelimit:RateLimitMiddleware",
)
# -- end of STACK OPTIONS -----------------------------------------------------------------


def fresh_keys_lua(body: bytes, headers: dict[str, str]) -> str:
    """A wrk script sending a fresh ``Idempotency-Key`` on every request.

    The prefix is random per wrk run (servers restart per measurement, Redis does not).
    """
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(body.decode())}",
        'wrk.headers["Content-Type"] = "application/json"',
        *(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()),
        "local counter = 0",
        "local prefix = nil",
        "request = function()",
        "  if prefix == nil then",
        "    math.randomseed(os.time() + math.floor(os.clock() * 1000000))",
        "    prefix = tostring(math.random(1, 1000000000))",
        "  end",
        "  counter = counter + 1",
        '  wrk.headers["Idempotency-Key"] = "bench-" .. prefix .. "-" .. counter',
        "  return wrk.format()",
        "end",
    ]
    return "\n".join(lines) + "\n"


def _url(store: str) -> str:
    return "memory://" if store == "memory" else os.environ["AIMW_BENCH_REDIS_URL"]


# -- the full stack ---------------------------------------------------------------------------


def _stack_app(store: str, sdk: bool = True) -> ASGIApp:
    return build_stack(bare_app(), store_url=_url(store), sdk=sdk)


_STACK = [
    *(
        Config(
            f"stack:{store}",
            partial(_stack_app, store),
            group="stack",
            headers=STACK_HEADERS,
            lua=fresh_keys_lua(REQUEST_BODY, STACK_HEADERS),
            fresh_keys=True,
            needs=needs,
            description=f"the six middlewares, {store} stores, a fresh idempotency key each",
            requires=STACK_MODULES,
        )
        for store, needs in (("memory", ()), ("redis", ("redis",)))
    ),
    Config(
        "stack:memory-no-sdk",
        partial(_stack_app, "memory", False),
        group="stack",
        headers=STACK_HEADERS,
        lua=fresh_keys_lua(REQUEST_BODY, STACK_HEADERS),
        fresh_keys=True,
        description="as stack:memory, tracing on the OpenTelemetry API alone (no SDK "
        "configured): the six middlewares' own cost, without the SDK's",
        requires=STACK_MODULES,
    ),
]


# -- the peers ------------------------------------------------------------------------------


def _routes() -> list[Route]:
    return [Route("/v1/chat/completions", chat_completions, methods=["POST"])]


def _slowapi_app() -> ASGIApp:
    from slowapi import Limiter
    from slowapi.middleware import SlowAPIASGIMiddleware
    from slowapi.util import get_remote_address

    app = Starlette(routes=_routes())
    app.state.limiter = Limiter(key_func=get_remote_address, default_limits=[UNREACHED_REQUESTS])
    app.add_middleware(SlowAPIASGIMiddleware)
    return app


def _otel_asgi(app: ASGIApp) -> ASGIApp:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    tracer_provider, meter_provider = sdk_providers()
    return OpenTelemetryMiddleware(
        app, tracer_provider=tracer_provider, meter_provider=meter_provider
    )


def _asgi_idempotency_header(app: ASGIApp) -> ASGIApp:
    from idempotency_header_middleware import IdempotencyHeaderMiddleware
    from idempotency_header_middleware.backends.memory import MemoryBackend

    return IdempotencyHeaderMiddleware(app, backend=MemoryBackend())


def _fastapi_idempotency(app: ASGIApp) -> ASGIApp:
    from fastapi_idempotency import IdempotencyMiddleware

    return IdempotencyMiddleware(app)


def peer_stack() -> ASGIApp:
    """One peer per role, in the same order as ours: OpenTelemetry's ASGI middleware
    (tracing), a no-op BaseHTTPMiddleware (where a user writes error shaping and auth),
    asgi-idempotency-header (idempotency, the pure-ASGI one of the two), slowapi (limits)."""
    from slowapi import Limiter
    from slowapi.middleware import SlowAPIASGIMiddleware
    from slowapi.util import get_remote_address
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    class Noop(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: Any) -> Response:
            return await call_next(request)  # type: ignore[no-any-return]

    from idempotency_header_middleware import IdempotencyHeaderMiddleware
    from idempotency_header_middleware.backends.memory import MemoryBackend

    app = Starlette(
        routes=_routes(),
        middleware=[
            Middleware(Noop),
            Middleware(IdempotencyHeaderMiddleware, backend=MemoryBackend()),  # type: ignore[arg-type]
            Middleware(SlowAPIASGIMiddleware),
        ],
    )
    app.state.limiter = Limiter(key_func=get_remote_address, default_limits=[UNREACHED_REQUESTS])
    return _otel_asgi(app)


_FRESH = fresh_keys_lua(REQUEST_BODY, {})
_PEERS: tuple[tuple[str, Callable[[], ASGIApp], str | None, tuple[str, ...], str], ...] = (
    (
        "peer:slowapi",
        _slowapi_app,
        None,
        ("slowapi:Limiter",),
        "slowapi's pure-ASGI middleware, memory storage, one default limit",
    ),
    (
        "peer:otel-asgi",
        lambda: _otel_asgi(bare_app()),
        None,
        ("opentelemetry.instrumentation.asgi:OpenTelemetryMiddleware",),
        "opentelemetry-instrumentation-asgi, SDK always-on, spans dropped",
    ),
    (
        "peer:asgi-idempotency-header",
        lambda: _asgi_idempotency_header(bare_app()),
        _FRESH,
        ("idempotency_header_middleware:IdempotencyHeaderMiddleware",),
        "asgi-idempotency-header (memory backend), fresh keys",
    ),
    (
        "peer:fastapi-idempotency",
        lambda: _fastapi_idempotency(bare_app()),
        _FRESH,
        ("fastapi_idempotency:IdempotencyMiddleware",),
        "fastapi-idempotency (memory store, BaseHTTPMiddleware), fresh keys",
    ),
    (
        "peer:stack",
        peer_stack,
        _FRESH,
        (
            "slowapi:Limiter",
            "opentelemetry.instrumentation.asgi:OpenTelemetryMiddleware",
            "idempotency_header_middleware:IdempotencyHeaderMiddleware",
        ),
        "otel-asgi + no-op BaseHTTPMiddleware + asgi-idempotency-header + slowapi",
    ),
)
CONFIGS = [
    *_STACK,
    *(
        Config(
            name,
            factory,
            group="peers",
            lua=lua,
            fresh_keys=lua is not None,
            description=description,
            requires=requires,
            fallback=True,
        )
        for name, factory, lua, requires, description in _PEERS
    ),
]
