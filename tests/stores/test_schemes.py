"""One URL grammar for every middleware: the same schemes and options for stores and limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from aimiddleware import ConfigurationError, StoreUnavailable
from aimiddleware.ratelimit import RateLimitMiddleware, Tier
from aimiddleware.ratelimit._storage import engine_from_url
from aimiddleware.stores import SCHEMES, MemoryStore, StoreURL, parse_store_url, store_from_url

REDIS_URLS = {
    "redis": "redis://127.0.0.1:1/0",
    "rediss": "rediss://127.0.0.1:1/0",
    "redis+unix": "redis+unix:///tmp/aimw-none.sock",
    "unix": "unix:///tmp/aimw-none.sock",
    "redis+cluster": "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
    "rediss+cluster": "rediss+cluster://127.0.0.1:7000,127.0.0.1:7001",
}


def test_the_scheme_registry_lists_every_scheme() -> None:
    assert set(SCHEMES) == {"memory", *REDIS_URLS}


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", sorted(REDIS_URLS))
async def test_every_redis_scheme_is_accepted_by_stores_and_limits(scheme: str) -> None:
    # nothing listens there: building does not connect
    url = REDIS_URLS[scheme]
    store = store_from_url(url)
    engine = engine_from_url(url, strategy="sliding-window", timeout=None)
    limiter = RateLimitMiddleware(
        lambda *a: None, tiers=[Tier("t", requests="1/minute")], store=url
    )
    try:
        assert store.backend == engine.backend == "redis"
        assert limiter._engine.backend == "redis"
    finally:
        await store.aclose()
        await engine.aclose()
        await limiter.aclose()


def test_memory_is_accepted_by_both_with_the_same_options() -> None:
    url = "memory://?max_entries=7&max_bytes=4096"
    store = store_from_url(url)
    assert isinstance(store, MemoryStore)
    assert (store.max_entries, store.max_bytes) == (7, 4096)
    engine = engine_from_url(url, strategy="fixed-window", timeout=0.5)
    assert engine.max_keys == 7  # type: ignore[attr-defined]
    # the rate limiter's older spelling names the same bound, for both
    assert store_from_url("memory://?max_keys=9").max_entries == 9  # type: ignore[attr-defined]
    older = engine_from_url("memory://?max_keys=9", strategy="fixed-window", timeout=0.5)
    assert older.max_keys == 9  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://u:s3cret@h/db", "scheme"),
        ("no-scheme", "scheme"),
        ("redis://:s3cret@127.0.0.1:1/0?timeout=soon", "timeout"),
        ("redis://:s3cret@127.0.0.1:1/0?timeout=0", "timeout"),
        ("redis://:s3cret@127.0.0.1:1/0?timeout=1&timeout=2", "twice"),
        ("redis://:s3cret@127.0.0.1:1/0?max_connections=0", "max_connections"),
        ("redis://:s3cret@127.0.0.1:1/0?prefix=a{b}", "prefix"),
        ("redis+cluster://:s3cret@127.0.0.1", "cluster node"),
        ("memory://?max_entries=0", "max_entries"),
        ("memory://?max_keys=x", "max_keys"),
        ("memory://?max_keys=1&max_entries=2", "not both"),
        ("memory://?other=1", "max_entries"),
        ("memory://host", "host"),
    ],
)
def test_both_refuse_the_same_urls_without_echoing_a_password(url: str, message: str) -> None:
    for build in (store_from_url, lambda u: engine_from_url(u, strategy="fixed-window")):
        with pytest.raises(ConfigurationError, match=message) as refused:
            build(url)
        assert "s3cret" not in str(refused.value)


@pytest.mark.anyio
async def test_the_redis_engine_builds_no_limits_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    # limits parses the rate strings; the client and the scripts are the store layer's
    import limits.storage

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a limits storage was built")

    monkeypatch.setattr(limits.storage, "storage_from_string", refuse)
    for url in ("redis://127.0.0.1:1/0", "redis+cluster://127.0.0.1:7000"):
        engine = engine_from_url(url, strategy="fixed-window")
        assert engine.backend == "redis"
        await engine.aclose()


def test_a_parsed_url_hides_its_password() -> None:
    parsed = parse_store_url("rediss+cluster://user:s3cret@h1:7000,H2:7001?timeout=2&prefix=p:")
    assert isinstance(parsed, StoreURL)
    assert (parsed.backend, parsed.timeout, parsed.prefix) == ("cluster", 2.0, "p:")
    assert parsed.nodes == (("h1", 7000), ("h2", 7001))
    assert parsed.ssl
    assert "s3cret" not in repr(parsed)
    single = parse_store_url("unix://:s3cret@/tmp/r.sock?db=2&timeout=1")
    assert single.scheme == "redis+unix"
    assert "timeout" not in single.redis_url  # the library's own options never reach redis-py
    assert "db=2" in single.redis_url
    assert "s3cret" not in repr(single)


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A loopback server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()


async def seconds_to_fail(engine: object) -> float:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await engine.ping()  # type: ignore[attr-defined]
    return time.monotonic() - started


@pytest.mark.anyio
async def test_the_limiter_honours_the_urls_timeout(silent_port: int) -> None:
    url = f"redis://127.0.0.1:{silent_port}/0?timeout=0.1"
    limiter = RateLimitMiddleware(
        lambda *a: None, tiers=[Tier("t", requests="1/minute")], store=url
    )
    try:
        assert limiter._engine._call.timeout == 0.1  # type: ignore[attr-defined]
        assert await seconds_to_fail(limiter._engine) < 0.4  # the default would wait 0.5
    finally:
        await limiter.aclose()


@pytest.mark.anyio
async def test_the_limiters_timeout_keyword_wins_over_the_urls(silent_port: int) -> None:
    url = f"redis://127.0.0.1:{silent_port}/0?timeout=5"
    limiter = RateLimitMiddleware(
        lambda *a: None, tiers=[Tier("t", requests="1/minute")], store=url, timeout=0.2
    )
    engine = engine_from_url(url, strategy="fixed-window", timeout=0.2)
    try:
        assert limiter._engine._call.timeout == 0.2  # type: ignore[attr-defined]
        assert 0.15 < await seconds_to_fail(limiter._engine) < 2
        assert engine.client is limiter._engine.client  # type: ignore[attr-defined]
    finally:
        await limiter.aclose()
        await engine.aclose()


def test_the_limiters_timeout_is_half_a_second_by_default() -> None:
    limiter = RateLimitMiddleware(
        lambda *a: None, tiers=[Tier("t", requests="1/minute")], store="redis://127.0.0.1:1/0"
    )
    assert limiter._engine._call.timeout == 0.5  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="timeout"):
        RateLimitMiddleware(lambda *a: None, tiers=[Tier("t", requests="1/minute")], timeout=0)
