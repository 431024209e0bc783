"""The one bounded table behind every in-process cache: expired first, then least recently used."""

from __future__ import annotations

import logging

import pytest

from aimiddleware import ConfigurationError
from aimiddleware._lru import LRUCache


def test_entries_stay_within_the_bound_whatever_the_number_of_keys() -> None:
    cache: LRUCache[str, int] = LRUCache("t", max_entries=100)
    for i in range(10_000):
        cache.put(f"k{i}", i, 0.0)
    assert len(cache) == 100
    assert cache.evictions == 9_900
    assert cache.get("k9999", 0.0) == 9999
    assert cache.get("k0", 0.0) is None


def test_bytes_stay_within_the_bound() -> None:
    cache: LRUCache[str, bytes] = LRUCache("t", max_entries=1000, max_bytes=10_000)
    for i in range(100):
        cache.put(f"k{i}", b"x" * 1000, 0.0, size=1000)
    assert cache.nbytes <= 10_000
    assert len(cache) == 10


def test_expired_entries_go_before_the_least_recently_used() -> None:
    cache: LRUCache[str, str] = LRUCache("t", max_entries=3)
    cache.put("oldest-live", "a", 0.0, deadline=100.0)
    cache.put("expiring", "b", 0.0, deadline=5.0)
    cache.put("live", "c", 0.0, deadline=100.0)
    cache.put("new", "d", 10.0, deadline=100.0)  # at t=10 "expiring" is past its deadline
    assert cache.get("oldest-live", 10.0) == "a"
    assert cache.get("expiring", 10.0) is None
    assert cache.evictions == 0  # an expired entry is not an eviction


def test_a_read_makes_an_entry_recent() -> None:
    cache: LRUCache[str, str] = LRUCache("t", max_entries=2)
    cache.put("a", "a", 0.0)
    cache.put("b", "b", 0.0)
    assert cache.get("a", 0.0) == "a"
    cache.put("c", "c", 0.0)
    assert cache.get("b", 0.0) is None
    assert cache.get("a", 0.0) == "a"


def test_an_expired_entry_is_never_served() -> None:
    cache: LRUCache[str, str] = LRUCache("t", max_entries=2)
    cache.put("a", "a", 0.0, deadline=1.0)
    assert cache.get("a", 0.5) == "a"
    assert cache.get("a", 1.0) is None
    assert len(cache) == 0


def test_evictions_log_one_line_a_minute_not_one_per_entry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache: LRUCache[int, int] = LRUCache("sample table", max_entries=10)
    with caplog.at_level(logging.WARNING, logger="aimiddleware.cache"):
        for i in range(1000):
            cache.put(i, i, 0.0)
    [line] = [r.getMessage() for r in caplog.records if r.name == "aimiddleware.cache"]
    assert line.startswith("sample table is full")
    assert "evicted 1 " in line  # the first eviction is said at once
    assert cache.evictions == 990


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_bad_bounds_are_configuration_errors(bad: object) -> None:
    with pytest.raises(ConfigurationError):
        LRUCache("t", max_entries=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        LRUCache("t", max_entries=10, max_bytes=bad)  # type: ignore[arg-type]


def test_rewriting_one_key_keeps_the_deadline_heap_bounded() -> None:
    cache: LRUCache[str, int] = LRUCache("t", max_entries=10)
    for i in range(100_000):  # the same key set again and again, never expiring meanwhile
        cache.put("k", i, 0.0, deadline=1000.0 + i)
    assert len(cache._heap) <= 1024 + 4


def test_evictions_count_in_the_opentelemetry_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    import aimiddleware._lru as lru

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    # the counter the global meter would give, from a provider this test reads
    counter = provider.get_meter("aimiddleware").create_counter("aimiddleware.cache.evictions")
    monkeypatch.setattr(lru, "_counter", counter)
    cache: LRUCache[int, int] = LRUCache("counted table", max_entries=5)
    for i in range(12):
        cache.put(i, i, 0.0)
    data = reader.get_metrics_data()
    assert data is not None
    [metric] = [
        m
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "aimiddleware.cache.evictions"
    ]
    [point] = metric.data.data_points
    assert point.value == 7
    assert dict(point.attributes or {}) == {"aimiddleware.cache": "counted table"}
    provider.shutdown()
