"""The memory engine's tables are bounded: a flood of identities cannot grow them."""

from __future__ import annotations

import logging
import time

import pytest

from aimiddleware import ConfigurationError
from aimiddleware.ratelimit._engine import Check, Slot
from aimiddleware.ratelimit._memory import DEFAULT_MAX_KEYS, MemoryEngine
from aimiddleware.ratelimit._storage import engine_from_url


@pytest.mark.parametrize("strategy", ["sliding-window", "fixed-window", "moving-window"])
def test_counters_stay_within_max_keys(strategy: str) -> None:
    engine = MemoryEngine(strategy, max_keys=100)
    for i in range(5000):  # the attack: every request from a new identity
        engine.acquire_now([Check(f"ip:{i}:requests:60", 10, 60, 1)], None, f"t{i}")
    tables = (engine._counters, engine._entries, engine._slots)
    assert all(len(table) <= 100 for table in tables)
    assert engine.evictions == 4900


def test_the_default_bound() -> None:
    engine = engine_from_url("memory://", strategy="sliding-window", timeout=0.5)
    assert isinstance(engine, MemoryEngine)
    assert engine.max_keys == DEFAULT_MAX_KEYS
    for i in range(DEFAULT_MAX_KEYS + 10):
        engine.acquire_now([Check(f"k{i}", 10, 60, 1)], None, "t")
    assert len(engine._counters) == DEFAULT_MAX_KEYS
    assert engine.evictions == 10


def test_max_keys_from_the_url() -> None:
    engine = engine_from_url("memory://?max_keys=7", strategy="fixed-window", timeout=0.5)
    assert isinstance(engine, MemoryEngine)
    assert engine.max_keys == 7


@pytest.mark.parametrize(
    "url", ["memory://?max_keys=0", "memory://?max_keys=x", "memory://?other=1", "memory://h"]
)
def test_bad_memory_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        engine_from_url(url, strategy="fixed-window", timeout=0.5)


def test_the_least_recently_used_key_goes_and_active_callers_keep_their_count() -> None:
    engine = MemoryEngine("fixed-window", max_keys=3)
    busy = Check("busy", 2, 60, 1)
    assert engine.acquire_now([busy], None, "t").allowed
    for i in range(10):
        engine.acquire_now([Check(f"other{i}", 10, 60, 1)], None, "t")
        engine.acquire_now([Check("busy", 1000, 60, 0)], None, "t")  # busy stays recent
    # the busy caller's count survived the flood: its limit of 2 still holds
    assert engine.acquire_now([busy], None, "t").allowed
    assert not engine.acquire_now([busy], None, "t").allowed


def test_past_windows_go_before_live_counters() -> None:
    engine = MemoryEngine("fixed-window", max_keys=2)
    engine.acquire_now([Check("live", 10, 60, 1)], None, "t")  # the least recently used
    now = int(time.time() * 1000)
    engine._counters.put("stale", [0, 5, 0, 1000], now, now + 5)  # its window ends in 5 ms
    time.sleep(0.02)
    engine.acquire_now([Check("new", 10, 60, 1)], None, "t")
    assert "live" in engine._counters
    assert engine.evictions == 0


def test_slots_are_bounded_and_freed() -> None:
    engine = MemoryEngine("fixed-window", max_keys=50)
    for i in range(500):
        slot = Slot(f"c{i}", 1, 60.0)
        decision = engine.acquire_now([], slot, f"t{i}")
        assert decision.allowed
    assert len(engine._slots) == 50
    assert not engine.acquire_now([], Slot("c499", 1, 60.0), "again").allowed
    engine.settle_now([], Slot("c499", 1, 60.0), "t499")
    assert engine.acquire_now([], Slot("c499", 1, 60.0), "again").allowed  # the lease came back


def test_evictions_log_a_line(caplog: pytest.LogCaptureFixture) -> None:
    engine = MemoryEngine("sliding-window", max_keys=10)
    with caplog.at_level(logging.WARNING, logger="aimiddleware.cache"):
        for i in range(100):
            engine.acquire_now([Check(f"k{i}", 10, 60, 1)], None, "t")
    [line] = [r.getMessage() for r in caplog.records if r.name == "aimiddleware.cache"]
    assert line.startswith("rate limit counters is full")
