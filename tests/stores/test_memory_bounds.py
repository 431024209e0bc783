"""MemoryStore is bounded by default: entries and bytes, expired entries first, then LRU."""

from __future__ import annotations

import logging

import anyio
import pytest

from aimiddleware import ConfigurationError
from aimiddleware.stores import MemoryStore, store_from_url
from aimiddleware.stores.memory import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES

pytestmark = pytest.mark.anyio

RESPONSE = b"x" * (256 * 1024)


async def test_the_default_store_holds_at_most_its_default_bytes() -> None:
    # the attack: 600 idempotency keys of 256 KiB responses for 24 h (150 MiB)
    store = MemoryStore()
    for i in range(600):
        await store.set(f"idem:{i}", RESPONSE, ttl=86400)
    assert store.nbytes <= DEFAULT_MAX_BYTES
    assert store.evictions > 0
    assert await store.get("idem:599") == RESPONSE  # the newest stays


async def test_the_default_store_holds_at_most_its_default_entries() -> None:
    store = MemoryStore()
    for i in range(DEFAULT_MAX_ENTRIES + 500):
        await store.incr(f"n:{i}", 1, ttl=60)
    assert store.entries == DEFAULT_MAX_ENTRIES
    assert store.evictions == 500


async def test_expired_entries_go_before_live_ones() -> None:
    store = MemoryStore(max_entries=4)
    await store.set("old-live", b"1", ttl=60)
    await store.set("short-1", b"2", ttl=0.05)
    await store.set("short-2", b"3", ttl=0.05)
    await store.set("recent", b"4", ttl=60)
    await anyio.sleep(0.1)
    await store.set("new", b"5", ttl=60)
    # the two expired keys made the room: the oldest live one was not evicted
    assert await store.get("old-live") == b"1"
    assert store.evictions == 0


async def test_then_the_least_recently_used_goes() -> None:
    store = MemoryStore(max_entries=3)
    for name in ("a", "b", "c"):
        await store.set(name, name.encode(), ttl=60)
    assert await store.get("a") == b"a"  # a read makes "a" recent: "b" is now the oldest
    await store.set("d", b"d", ttl=60)
    assert await store.get("b") is None
    assert [await store.get(k) for k in ("a", "c", "d")] == [b"a", b"c", b"d"]
    assert store.evictions == 1


async def test_byte_bound_counts_chunk_logs() -> None:
    store = MemoryStore(max_entries=1000, max_bytes=64 * 1024)
    await store.set("record", b"r" * 20_000, ttl=60)
    for _ in range(50):
        await store.append("stream", b"c" * 1024, ttl=60)
    assert store.nbytes <= 64 * 1024
    assert await store.get("record") is None  # the older entry made room for the log
    assert len(await store.chunks("stream")) == 50


async def test_eviction_logs_one_line_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore(max_entries=10)
    with caplog.at_level(logging.WARNING, logger="aimiddleware.cache"):
        for i in range(100):
            await store.set(f"k{i}", b"v", ttl=60)
    assert store.evictions == 90
    lines = [r for r in caplog.records if r.name == "aimiddleware.cache"]
    assert len(lines) == 1  # not one line per eviction
    assert "memory store" in lines[0].getMessage()
    assert "evicted" in lines[0].getMessage()


async def test_bounds_are_options_of_the_url_too() -> None:
    store = store_from_url("memory://", max_entries=5, max_bytes=1024)
    assert isinstance(store, MemoryStore)
    assert repr(store) == "MemoryStore(max_entries=5, max_bytes=1024)"
    for i in range(20):
        await store.set(f"k{i}", b"v", ttl=60)
    assert store.entries == 5


@pytest.mark.parametrize(
    "options", [{"max_entries": 0}, {"max_bytes": -1}, {"max_entries": 1.5}, {"max_bytes": True}]
)
def test_bad_bounds_are_configuration_errors(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        MemoryStore(**options)  # type: ignore[arg-type]
