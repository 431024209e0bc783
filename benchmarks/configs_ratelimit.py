"""Rate-limit configurations: ours on memory and on Redis, and slowapi with an equivalent limit.

Every limit is high enough never to reject: what is measured is the cost of counting.
The LLM route carries a requests, a tokens and a concurrency limit (the realistic agent
tier), so each request is checked (one round trip) and settled (one round trip) on Redis.
"""

from __future__ import annotations

import os

from .apps import ASGIApp, Config, bare_app

_HIGH = "1000000000/minute"


def _ours(storage: str) -> ASGIApp:
    from aimiddleware.ratelimit import RateLimitMiddleware, Tier

    tier = Tier("agent", requests=_HIGH, tokens="1000000000000/minute", concurrency=1_000_000)
    return RateLimitMiddleware(bare_app(), tiers=[tier], store=storage, key_prefix="bench:")


def _memory() -> ASGIApp:
    return _ours("memory://")


def _memory_requests() -> ASGIApp:
    from aimiddleware.ratelimit import RateLimitMiddleware, Tier

    # the cost of counting alone: no body parsed, no slot, no usage read back
    tier = Tier("agent", requests=_HIGH)
    return RateLimitMiddleware(bare_app(), tiers=[tier], key_prefix="bench:")


def _redis() -> ASGIApp:
    return _ours(os.environ["AIMW_BENCH_REDIS_URL"])


def _slowapi() -> ASGIApp:
    from slowapi import Limiter
    from slowapi.middleware import SlowAPIMiddleware
    from slowapi.util import get_remote_address

    app = bare_app()
    app.state.limiter = Limiter(key_func=get_remote_address, default_limits=[_HIGH])
    app.add_middleware(SlowAPIMiddleware)
    return app


CONFIGS = [
    Config(
        "ratelimit:memory",
        _memory,
        group="ratelimit",
        description="RateLimitMiddleware, requests+tokens+concurrency, memory",
    ),
    Config(
        "ratelimit:memory-requests",
        _memory_requests,
        group="ratelimit",
        description="RateLimitMiddleware, one requests limit only, memory",
    ),
    Config(
        "ratelimit:redis",
        _redis,
        group="ratelimit",
        needs=("redis",),
        description="RateLimitMiddleware, requests+tokens+concurrency, one Redis",
    ),
    Config(
        "peer:slowapi",
        _slowapi,
        group="peers",
        description="slowapi SlowAPIMiddleware, default limit, memory",
    ),
]
