"""Idempotency benchmark configurations, the two Python peers, store round trips and TTFT.

Throughput (ratios to ``bare``, one interleaved run)::

    python -m benchmarks --only idempotency:memory-fresh idempotency:memory-replay \\
        idempotency:redis-fresh idempotency:redis-replay \\
        peer:asgi-idempotency-header peer:fastapi-idempotency --rounds 3 --duration 3

Store round trips and time to first token: ``python -m benchmarks.idempotency_probe``.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from .apps import REQUEST_BODY, ASGIApp, Config, bare_app
from .configs_stack import fresh_keys_lua

# a fresh key on every request
FRESH_KEYS_LUA = fresh_keys_lua(REQUEST_BODY, {})


def _ours(store: Any) -> ASGIApp:
    from aimiddleware.idempotency import IdempotencyMiddleware

    return IdempotencyMiddleware(bare_app(), store=store, anonymous="shared")


def _memory() -> ASGIApp:
    return _ours("memory://")


def _redis() -> ASGIApp:
    return _ours(os.environ["AIMW_BENCH_REDIS_URL"] + f"?prefix=bench{uuid.uuid4().hex[:6]}:")


def _asgi_idempotency_header() -> ASGIApp:
    from idempotency_header_middleware import IdempotencyHeaderMiddleware
    from idempotency_header_middleware.backends.memory import MemoryBackend

    return IdempotencyHeaderMiddleware(bare_app(), backend=MemoryBackend())


def _fastapi_idempotency() -> ASGIApp:
    from fastapi_idempotency import IdempotencyMiddleware

    return IdempotencyMiddleware(bare_app())


_FRESH = (
    ("memory-fresh", _memory, (), "IdempotencyMiddleware, memory store, a fresh key per request"),
    ("redis-fresh", _redis, ("redis",), "IdempotencyMiddleware, Redis store, fresh keys"),
)
_REPLAY = (
    ("memory-replay", _memory, (), "IdempotencyMiddleware, memory store, every request a replay"),
    ("redis-replay", _redis, ("redis",), "IdempotencyMiddleware, Redis store, replays"),
)
CONFIGS = [
    *(
        Config(
            f"idempotency:{name}",
            factory,
            group="idempotency",
            lua=FRESH_KEYS_LUA,
            fresh_keys=True,
            needs=needs,
            description=description,
        )
        for name, factory, needs, description in _FRESH
    ),
    *(
        Config(
            f"idempotency:{name}",
            factory,
            group="idempotency",
            headers={"Idempotency-Key": "bench-replay"},
            needs=needs,
            description=description,
        )
        for name, factory, needs, description in _REPLAY
    ),
    Config(
        "peer:asgi-idempotency-header",
        _asgi_idempotency_header,
        group="peers",
        lua=FRESH_KEYS_LUA,
        fresh_keys=True,
        description="asgi-idempotency-header 0.2 (memory backend), fresh keys",
    ),
    Config(
        "peer:fastapi-idempotency",
        _fastapi_idempotency,
        group="peers",
        lua=FRESH_KEYS_LUA,
        fresh_keys=True,
        description="fastapi-idempotency 0.1 (memory store, BaseHTTPMiddleware), fresh keys",
    ),
]
