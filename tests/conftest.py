from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from aimiddleware.stores import MemoryStore, Store, store_from_url

from . import servers
from .servers import RedisCluster, RedisServer, running_cluster, running_redis


def pytest_unconfigure(config: pytest.Config) -> None:
    # llama_cpp._utils opens /dev/null twice at import, to silence llama.cpp while a model
    # loads, and never closes it: the interpreter would say so (ResourceWarning) at exit.
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        devnull = getattr(utils, name, None)
        if devnull is not None:
            devnull.close()


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
def dead_port() -> Iterator[int]:
    """A loopback port nothing listens on, held for the test so that nothing else takes it."""
    with servers.dead_port() as port:
        yield port


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this test alone, to stop, pause and start again (doing that to the
    session's would stall its neighbours); resumed and closed when the test ends."""
    server = RedisServer(tmp_path_factory.mktemp("own-redis"))
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.resume()
        server.close()


STORE_BACKENDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("cluster", marks=pytest.mark.cluster),
]


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """The same test on the memory store, a real redis-server and a real Redis Cluster,
    each under a fresh key prefix."""
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
