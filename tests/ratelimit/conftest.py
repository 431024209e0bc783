from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from aimiddleware.ratelimit import RateLimitMiddleware


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=[pytest.mark.redis, pytest.mark.cluster]),
    ]
)
def store(request: pytest.FixtureRequest) -> str:
    """Every backend: in-process memory, a real redis-server, a real 3-master Cluster."""
    if request.param == "memory":
        return "memory://"
    if request.param == "redis":
        return str(request.getfixturevalue("redis_server").url)
    return str(request.getfixturevalue("redis_cluster").url)


@pytest.fixture
def prefix() -> str:
    """Fresh keys per test: the Redis servers are shared by the session."""
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def closing() -> object:
    """Collects middlewares and closes their store connections after the test."""
    opened: list[RateLimitMiddleware] = []

    def keep(middleware: RateLimitMiddleware) -> RateLimitMiddleware:
        opened.append(middleware)
        return middleware

    yield keep
    for middleware in opened:
        await middleware.aclose()


Keep = Callable[[RateLimitMiddleware], RateLimitMiddleware]
