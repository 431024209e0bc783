"""One contract, three backends: memory, a real redis-server and a real 3-master Redis Cluster."""

from __future__ import annotations

import time

import anyio
import pytest

from aimiddleware import StoreUnavailable
from aimiddleware.stores import MemoryStore, Store, store_from_url

from ..servers import RedisCluster, RedisServer

pytestmark = pytest.mark.anyio


async def test_set_get_delete(store: Store) -> None:
    assert await store.get("a") is None
    await store.set("a", b"\x00binary\xff", ttl=30)
    assert await store.get("a") == b"\x00binary\xff"
    await store.set("a", b"replaced", ttl=30)
    assert await store.get("a") == b"replaced"
    await store.delete("a")
    assert await store.get("a") is None


async def test_ttl_expiry(store: Store) -> None:
    await store.set("short", b"v", ttl=0.15)
    await store.append("short", b"c", ttl=0.15)
    assert await store.get("short") == b"v"
    await anyio.sleep(0.4)
    assert await store.get("short") is None
    assert await store.chunks("short") == []


async def test_claim_returns_current_value_to_losers(store: Store) -> None:
    assert await store.claim("k", b"lease-1", ttl=30) is None
    assert await store.claim("k", b"lease-2", ttl=30) == b"lease-1"


async def test_claim_is_free_again_after_the_lease_expires(store: Store) -> None:
    assert await store.claim("k", b"first", ttl=0.15) is None
    await anyio.sleep(0.4)
    assert await store.claim("k", b"second", ttl=30) is None
    assert await store.get("k") == b"second"


async def test_exactly_one_of_200_concurrent_claimers_wins(store: Store) -> None:
    results: dict[int, bytes | None] = {}

    async def claimer(i: int) -> None:
        results[i] = await store.claim("contended", f"owner-{i}".encode(), ttl=30)

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(claimer, i)
    winners = [i for i, current in results.items() if current is None]
    assert len(winners) == 1
    owner = f"owner-{winners[0]}".encode()
    assert all(current == owner for current in results.values() if current is not None)
    assert await store.get("contended") == owner


async def test_renew_extends_only_the_owners_lease(store: Store) -> None:
    await store.claim("lease", b"me", ttl=0.3)
    assert await store.renew("lease", b"someone-else", ttl=30) is False
    assert await store.renew("lease", b"me", ttl=30) is True
    await anyio.sleep(0.5)
    assert await store.get("lease") == b"me"
    assert await store.renew("absent", b"me", ttl=30) is False


async def test_replace_is_compare_and_set(store: Store) -> None:
    await store.claim("rec", b"lease", ttl=30)
    assert await store.replace("rec", b"not-the-lease", b"done", ttl=30) is False
    assert await store.get("rec") == b"lease"
    assert await store.replace("rec", b"lease", b"done", ttl=30) is True
    assert await store.get("rec") == b"done"
    assert await store.replace("absent", b"lease", b"done", ttl=30) is False
    assert await store.get("absent") is None


async def test_release_is_compare_and_delete_of_value_and_log(store: Store) -> None:
    await store.claim("rec", b"lease", ttl=30)
    await store.append("rec", b"chunk", ttl=30)
    assert await store.release("rec", b"other") is False
    assert await store.get("rec") == b"lease"
    assert await store.release("rec", b"lease") is True
    assert await store.get("rec") is None
    assert await store.chunks("rec") == []


async def test_counter_adds_and_subtracts(store: Store) -> None:
    assert await store.incr("n", 5, ttl=30) == 5
    assert await store.incr("n", -2, ttl=30) == 3
    assert await store.get("n") == b"3"


async def test_counter_ttl_is_set_at_creation_and_not_extended(store: Store) -> None:
    await store.incr("window", 1, ttl=0.3)
    await anyio.sleep(0.15)
    await store.incr("window", 1, ttl=30)  # must not push the deadline out
    await anyio.sleep(0.3)
    assert await store.get("window") is None
    assert await store.incr("window", 1, ttl=30) == 1


async def test_counters_under_concurrency(store: Store) -> None:
    async def bump() -> None:
        for _ in range(10):
            await store.incr("hits", 1, ttl=30)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(bump)
    assert await store.get("hits") == b"500"


async def test_chunk_log_keeps_order_and_reads_from_an_offset(store: Store) -> None:
    frames = [f'data: {{"i": {i}}}\n\n'.encode() for i in range(100)]
    for i, frame in enumerate(frames, start=1):
        assert await store.append("stream", frame, ttl=30) == i
    assert await store.chunks("stream") == frames
    assert await store.chunks("stream", 95) == frames[95:]
    assert await store.chunks("stream", 100) == []
    assert await store.chunks("never-written") == []


async def test_chunk_log_is_independent_of_the_value(store: Store) -> None:
    await store.append("rec", b"c1", ttl=30)
    assert await store.get("rec") is None
    await store.set("rec", b"meta", ttl=30)
    assert await store.chunks("rec") == [b"c1"]


async def test_chunk_log_ttl_is_refreshed_by_append(store: Store) -> None:
    await store.append("live", b"1", ttl=0.3)
    await anyio.sleep(0.2)
    await store.append("live", b"2", ttl=0.3)
    await anyio.sleep(0.2)
    assert await store.chunks("live") == [b"1", b"2"]


async def test_concurrent_appends_lose_nothing(store: Store) -> None:
    async def writer(i: int) -> None:
        for j in range(20):
            await store.append("log", f"{i}:{j}".encode(), ttl=30)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(writer, i)
    log = await store.chunks("log")
    assert sorted(log) == sorted(f"{i}:{j}".encode() for i in range(10) for j in range(20))
    for i in range(10):  # each writer's own chunks stay in its order
        mine = [c for c in log if c.startswith(f"{i}:".encode())]
        assert mine == [f"{i}:{j}".encode() for j in range(20)]


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_memory_store_sweeps_expired_keys() -> None:
    store = MemoryStore()
    for i in range(2000):
        await store.set(f"k{i}", b"v", ttl=0.05)
    await anyio.sleep(0.1)
    await store.set("fresh", b"v", ttl=30)
    assert store.entries == 1  # the write swept every expired key


# -- faults: a real redis-server stopped, frozen and restarted -----------------------------


@pytest.mark.redis
async def test_stopped_redis_raises_store_unavailable_within_the_timeout(
    own_redis: RedisServer,
) -> None:
    store = store_from_url(own_redis.url, timeout=0.5)
    async with store:
        await store.set("k", b"v", ttl=30)
        own_redis.stop()
        for operation in (
            lambda: store.get("k"),
            lambda: store.claim("k", b"x", ttl=1),
            lambda: store.append("k", b"x", ttl=1),
            lambda: store.incr("n", 1, ttl=1),
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                await operation()
            assert time.monotonic() - started < 0.5 + 0.5
            assert caught.value.backend == "redis"
        own_redis.start()
        await store.set("k", b"back", ttl=30)  # recovers without a new store
        assert await store.get("k") == b"back"


@pytest.mark.redis
async def test_frozen_redis_raises_store_unavailable_instead_of_hanging(
    own_redis: RedisServer,
) -> None:
    store = store_from_url(own_redis.url, timeout=0.3)
    async with store:
        await store.set("k", b"v", ttl=30)
        own_redis.pause()
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.get("k")
            assert time.monotonic() - started < 0.3 + 0.5
        finally:
            own_redis.resume()
        assert await store.get("k") == b"v"


@pytest.mark.cluster
async def test_record_and_its_log_share_one_cluster_slot(redis_cluster: RedisCluster) -> None:
    from redis.asyncio.cluster import RedisCluster as Client

    store = store_from_url(redis_cluster.url, prefix="slot:")
    async with store:
        await store.claim("record-1", b"lease", ttl=30)
        await store.append("record-1", b"chunk", ttl=30)
        assert await store.release("record-1", b"lease")  # multi-key script: same slot or error
    nodes = redis_cluster.url.removeprefix("redis+cluster://")
    host, port = nodes.split(",")[0].split(":")
    client = Client(host=host, port=int(port))
    try:
        assert client.keyslot("slot:{record-1}") == client.keyslot("slot:{record-1}:log")
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_frozen_redis_bounds_every_caller_beyond_the_pool_and_script_reloads(
    own_redis: RedisServer,
) -> None:
    # more callers than connections (the rest wait for one), and the script cache flushed so
    # the first script call meets NOSCRIPT and loads it again: all within the one timeout
    store = store_from_url(own_redis.url, timeout=0.3, max_connections=4)
    async with store:
        await store.claim("warm", b"v", ttl=30)
        own_redis.cli("script", "flush")
        own_redis.pause()
        try:
            waited: list[float] = []

            async def call(n: int) -> None:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await store.claim(f"k{n}", b"v", ttl=30)
                waited.append(time.monotonic() - started)

            async with anyio.create_task_group() as group:
                for n in range(24):
                    group.start_soon(call, n)
        finally:
            own_redis.resume()
        assert len(waited) == 24
        assert max(waited) < 0.3 + 0.5
        assert await store.claim("after", b"v", ttl=30) is None  # the script loads again


@pytest.mark.cluster
async def test_cluster_callers_beyond_max_connections_wait_for_a_place(
    redis_cluster: RedisCluster,
) -> None:
    # 200 callers on one key, so on one node, with 4 places: the cluster client alone refuses
    # the fifth at once (MaxConnectionsError); the store makes the rest wait their turn
    store = store_from_url(redis_cluster.url, prefix="places:", timeout=5, max_connections=4)
    async with store:
        async with anyio.create_task_group() as group:
            for _ in range(200):
                group.start_soon(store.incr, "one-node", 1, 30)
        assert await store.incr("one-node", 0, 30) == 200


@pytest.mark.cluster
async def test_cluster_commands_outlasting_the_timeout_lose_no_connection(
    redis_cluster: RedisCluster,
) -> None:
    from redis.asyncio.cluster import RedisCluster as Client

    host, port = redis_cluster.url.removeprefix("redis+cluster://").split(",")[0].split(":")
    client = Client(host=host, port=int(port))
    try:
        await client.initialize()
        owner_port = client.get_node_from_key("outlast:{frozen}").port
    finally:
        await client.aclose()
    owner = next(node for node in redis_cluster.nodes if node.port == owner_port)
    store = store_from_url(redis_cluster.url, prefix="outlast:", timeout=0.3, max_connections=4)
    async with store:
        await store.incr("frozen", 0, 30)  # one connection open to the owner
        owner.pause()
        try:
            # the callers that open new connections meet a frozen handshake at the timeout
            waited: list[float] = []

            async def call() -> None:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await store.incr("frozen", 1, 30)
                waited.append(time.monotonic() - started)

            async with anyio.create_task_group() as group:
                for _ in range(24):
                    group.start_soon(call)
        finally:
            owner.resume()
        assert len(waited) == 24
        assert max(waited) < 0.3 + 0.5
        # the commands left under way end once the node answers; then all 4 places serve again
        deadline = time.monotonic() + 10
        while True:
            try:
                await store.get("frozen")
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                await anyio.sleep(0.1)
        for _ in range(10):  # as many callers as places: none waits, none is refused
            async with anyio.create_task_group() as group:
                for _ in range(4):
                    group.start_soon(store.incr, "frozen", 1, 30)
        # the 4 commands that were under way at the freeze ran when it thawed
        assert await store.incr("frozen", 0, 30) == 4 + 40
