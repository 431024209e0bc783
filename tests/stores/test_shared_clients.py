"""One Redis client per store URL, shared by every middleware that names it."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.ratelimit import RateLimitMiddleware, Tier
from aimiddleware.ratelimit._storage import engine_from_url
from aimiddleware.stores import RedisStore, store_from_url

from ..servers import RedisCluster, RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture(
    params=["redis", pytest.param("cluster", marks=pytest.mark.cluster)],
)
def url(request: pytest.FixtureRequest) -> str:
    """A real redis-server, then a real 3-master Cluster."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return cluster.url


class Upstream:
    """An endpoint that counts the times it really ran."""

    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.runs += 1
        body = json.dumps({"run": self.runs}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def both(upstream: Upstream, url: str, prefix: str) -> tuple[Any, IdempotencyMiddleware, Any]:
    """Idempotency outside the rate limiter, both on ``url``: (stack, idempotency, limiter)."""
    limiter = RateLimitMiddleware(
        upstream, tiers=[Tier("t", requests="1000/minute")], store=url, key_prefix=prefix
    )
    idempotency = IdempotencyMiddleware(
        limiter,
        store=f"{url}{'&' if '?' in url else '?'}prefix={prefix}",
        principal_resolver=lambda s: "u",
    )
    return idempotency, idempotency, limiter


async def post(app: Any, key: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.post(
            "/v1/chat/completions", json={"n": 1}, headers={"Idempotency-Key": key}
        )


async def test_idempotency_and_rate_limits_on_one_url_share_one_client(url: str) -> None:
    upstream = Upstream()
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    app, idempotency, limiter = both(upstream, url, prefix)
    store = idempotency.store
    assert isinstance(store, RedisStore)
    assert store.client is limiter._engine.client
    pool = getattr(store.client, "connection_pool", None)
    if pool is not None:  # a single node: one pool (a cluster has one per node, in the client)
        assert pool is limiter._engine.client.connection_pool
    try:
        assert (await post(app, "k1")).status_code == 200
        # the limiter is shut down: the store's client stays open
        await limiter.aclose()
        again = await post(app, "k1")
        assert again.status_code == 200
        assert again.headers.get("idempotent-replayed") == "true"
        assert upstream.runs == 1
        await store.ping()
    finally:
        await store.aclose()
        await limiter.aclose()  # a second close gives nothing back twice


async def test_the_last_close_closes_the_client(url: str) -> None:
    first = store_from_url(url, timeout=2)
    second = store_from_url(url, timeout=2)
    assert isinstance(first, RedisStore)
    assert isinstance(second, RedisStore)
    assert first.client is second.client
    await first.aclose()
    await first.aclose()  # twice: still one hold given back
    await second.ping()
    await second.set("k", b"v", 5)
    await second.aclose()
    # the client went with its last user: the next store on the URL opens a new one
    third = store_from_url(url, timeout=2)
    assert isinstance(third, RedisStore)
    try:
        assert third.client is not second.client
        await third.ping()
    finally:
        await third.aclose()


async def test_another_timeout_is_another_client(url: str) -> None:
    engine = engine_from_url(url, strategy="sliding-window", timeout=1.5)
    store = store_from_url(url, timeout=1.5)
    other = store_from_url(url, timeout=2.5)
    try:
        assert isinstance(store, RedisStore)
        assert isinstance(other, RedisStore)
        assert engine.client is store.client  # type: ignore[attr-defined]
        assert other.client is not store.client
        assert other.timeout == 2.5
    finally:
        for closing in (engine, store, other):
            await closing.aclose()


def test_a_client_of_an_ended_event_loop_is_not_handed_out(redis_url: str) -> None:
    # built outside a loop: shared by what is built outside one, until its loop ends
    first = store_from_url(redis_url)
    second = store_from_url(redis_url)
    assert isinstance(first, RedisStore)
    assert isinstance(second, RedisStore)
    assert first.client is second.client

    async def use() -> None:
        await first.ping()
        await first.client.connection_pool.disconnect()  # nothing left open in this loop

    asyncio.run(use())
    # that loop is closed: its connections are of no use to a store built now
    third = store_from_url(redis_url)
    assert isinstance(third, RedisStore)
    assert third.client is not first.client

    async def use_and_close() -> None:
        await third.ping()
        for store in (first, second, third):
            await store.aclose()

    asyncio.run(use_and_close())


def test_stores_built_in_two_event_loops_have_two_clients(redis_url: str) -> None:
    async def build() -> RedisStore:
        store = store_from_url(redis_url)
        assert isinstance(store, RedisStore)
        return store

    one = asyncio.run(build())  # still open, never used
    two = asyncio.run(build())
    assert one.client is not two.client

    async def close() -> None:
        await two.ping()
        for store in (one, two):
            await store.aclose()

    asyncio.run(close())
