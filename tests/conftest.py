from __future__ import annotations

from collections.abc import Iterator

import pytest

from .servers import RedisCluster, RedisServer, running_cluster, running_redis


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # redis.asyncio and llama-cpp-python's threads are used with asyncio
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, shared by the session."""
    with running_redis() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster on loopback, shared by the session."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url
