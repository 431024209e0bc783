from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from aimiddleware.stores import MemoryStore, Store, store_from_url

from ..servers import RedisCluster, RedisServer

BACKENDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("cluster", marks=pytest.mark.cluster),
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """The same tests on the memory store, a real redis-server and a real Redis Cluster."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    if request.param == "memory":
        backend: Store = MemoryStore()
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        backend = store_from_url(f"{server.url}?prefix={prefix}&timeout=2")
    else:
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        backend = store_from_url(cluster.url, prefix=prefix, timeout=2)
    async with backend:
        yield backend
