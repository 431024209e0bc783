"""The counting engine: check and charge every limit of one request at once, then settle.

Three operations, each atomic and, on Redis, one round trip:

``acquire``
    check every window limit of the request and its concurrency slot; charge all of them only
    if none rejects (all or nothing).
``settle``
    after the response: move each token reservation to the real usage (charge the difference
    or refund it) and release the concurrency slot.
``renew``
    extend the lease of a slot held by a long stream.

The window algorithms are those of the ``limits`` package (sliding window counter, fixed
window, moving window), kept in one record per limit so that a refund can reach the window
that was charged. The memory engine and the Redis script implement the same rules.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final, NamedTuple

__all__ = [
    "STRATEGY_CODES",
    "Check",
    "Decision",
    "Engine",
    "MemoryEngine",
    "Outcome",
    "Slot",
]

# the codes the Redis script understands
STRATEGY_CODES: Final = {"sliding-window": 1, "fixed-window": 2, "moving-window": 3}


class Check(NamedTuple):
    """One window limit of a request: ``cost`` units against ``limit`` per ``window`` seconds."""

    key: str
    limit: int
    window: int
    cost: int


class Slot(NamedTuple):
    """A concurrency slot: at most ``limit`` leases in ``key``; this request's is ``token``."""

    key: str
    limit: int
    lease: float


class Outcome(NamedTuple):
    """The state of one limit after ``acquire``: what is left, when the window resets (s),
    how long to wait before the same cost would fit (s), and the window that was charged."""

    remaining: int
    reset: float
    retry: float
    charged_window: int


@dataclass(slots=True)
class Decision:
    """``failed`` is the index of the rejecting check, ``len(checks)`` for the slot, or -1."""

    allowed: bool
    failed: int
    outcomes: list[Outcome] = field(default_factory=list)
    slots_in_use: int = 0


class Engine(ABC):
    """Where the counts live. Faults raise :class:`~aimiddleware.StoreUnavailable`."""

    backend: ClassVar[str] = "abstract"
    shared: ClassVar[bool] = False
    # whether settle() waits on I/O, where a cancelled request could interrupt it
    suspends: ClassVar[bool] = True

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        self._code = STRATEGY_CODES[strategy]

    @abstractmethod
    async def acquire(self, checks: Sequence[Check], slot: Slot | None, token: str) -> Decision: ...

    @abstractmethod
    async def settle(
        self,
        adjustments: Sequence[tuple[Check, Outcome, int]],
        slot: Slot | None,
        token: str,
    ) -> None:
        """``adjustments``: (check as acquired, its outcome, the real cost)."""

    @abstractmethod
    async def renew(self, slot: Slot, token: str) -> None: ...

    async def ping(self) -> None:  # noqa: B027 (nothing to check in memory)
        """Raise ``StoreUnavailable`` if the backend does not answer."""

    async def aclose(self) -> None:  # noqa: B027
        """Release connections."""


def _fits_at(window_ms: int, room: int, previous: int) -> int:
    """Milliseconds into a window after which ``previous``'s weighted share leaves ``room``."""
    if room + 1 >= previous:
        return 0
    return math.floor(window_ms * (1 - (room + 1) / previous)) + 1


def _now_ms() -> int:
    return int(time.time() * 1000)


class MemoryEngine(Engine):
    """Counts in this process only: right for one worker, tests and development.

    Each operation runs without an ``await`` inside, so it is atomic on the event loop.
    """

    backend: ClassVar[str] = "memory"
    suspends: ClassVar[bool] = False
    _SWEEP_EVERY: Final = 4096

    def __init__(self, strategy: str) -> None:
        super().__init__(strategy)
        # counter windows: key -> [window index, current count, previous count, window ms]
        self._counters: dict[str, list[int]] = {}
        # moving windows: key -> [(timestamp ms, token, amount)] oldest first
        self._entries: dict[str, list[tuple[int, str, int]]] = {}
        self._windows: dict[str, int] = {}
        # slots: key -> {token: lease expiry ms}
        self._slots: dict[str, dict[str, int]] = {}
        self._operations = 0

    # -- counter windows (sliding window counter, fixed window) -------------------------------

    def _counter(self, key: str, window_ms: int, now: int) -> tuple[list[int], int, int]:
        """The record of ``key`` shifted to now, its used count, and ms into the window."""
        index = now // window_ms
        record = self._counters.get(key)
        if record is None or record[0] < index - 1:
            record = [index, 0, 0, window_ms]
        elif record[0] == index - 1:
            record = [index, 0, record[1], window_ms]
        elapsed = now - index * window_ms
        used = record[1]
        if self._code == 1:
            used += record[2] * (window_ms - elapsed) // window_ms
        return record, used, elapsed

    def _counter_retry(self, record: list[int], cost: int, limit: int, elapsed: int) -> int:
        window_ms = record[3]
        current, previous = record[1], record[2]
        if self._code == 2:
            return window_ms - elapsed
        # the weighted count is floor(previous * (window - t) / window): it fits once that
        # product drops below (room + 1), i.e. at t > window * (1 - (room + 1) / previous)
        if current + cost <= limit and previous > 0:
            room = limit - cost - current
            fits_at = _fits_at(window_ms, room, previous)
            return max(fits_at - elapsed, 1)
        wait = window_ms - elapsed
        if current > 0 and cost <= limit:
            wait += _fits_at(window_ms, limit - cost, current)
        return wait

    # -- moving windows -----------------------------------------------------------------------

    def _moving(self, key: str, window_ms: int, now: int) -> tuple[list[tuple[int, str, int]], int]:
        entries = [e for e in self._entries.get(key, ()) if e[0] > now - window_ms]
        return entries, sum(e[2] for e in entries)

    # -- operations ---------------------------------------------------------------------------

    async def acquire(self, checks: Sequence[Check], slot: Slot | None, token: str) -> Decision:
        now = _now_ms()
        self._sweep(now)
        before: list[Outcome] = []  # the state as found, reported when something rejects
        after: list[Outcome] = []  # the state once charged
        failed = -1
        counters: list[tuple[Check, list[int]]] = []
        moving: list[tuple[Check, list[tuple[int, str, int]]]] = []
        for position, check in enumerate(checks):
            window_ms = check.window * 1000
            cost, limit = check.cost, check.limit
            if self._code == 3:
                entries, used = self._moving(check.key, window_ms, now)
                reset = (entries[0][0] + window_ms - now) if entries else window_ms
                fits = cost <= limit and used + cost <= limit
                retry = window_ms
                if not fits and cost <= limit:
                    freed = 0
                    for stamp, _, amount in entries:
                        freed += amount
                        if used - freed + cost <= limit:
                            retry = stamp + window_ms - now
                            break
                moving.append((check, entries))
                index = 0
            else:
                record, used, elapsed = self._counter(check.key, window_ms, now)
                reset = window_ms - elapsed
                fits = cost <= limit and used + cost <= limit
                retry = 0 if fits else self._counter_retry(record, cost, limit, elapsed)
                counters.append((check, record))
                index = record[0]
            if not fits and failed < 0:
                failed = position
            remaining = limit - used if used < limit else 0
            before.append(Outcome(remaining, reset / 1000, retry / 1000, index))
            after.append(Outcome(max(0, remaining - cost), reset / 1000, 0.0, index))
        in_use = 0
        if slot is not None:
            leases = self._slots.get(slot.key)
            if leases is None:
                leases = self._slots[slot.key] = {}
            if len(leases) >= slot.limit:  # only a full set can hold leases that lapsed
                for expired in [t for t, e in leases.items() if e <= now]:
                    del leases[expired]
            in_use = len(leases)
            if failed < 0 and in_use >= slot.limit:
                failed = len(checks)
            if failed < 0:
                leases[token] = now + int(slot.lease * 1000)
                in_use += 1
        if failed >= 0:
            return Decision(False, failed, before, in_use)
        for check, entries in moving:
            entries.append((now, token, check.cost))
            self._entries[check.key] = entries
            self._windows[check.key] = check.window * 1000
        for check, record in counters:
            record[1] += check.cost
            self._counters[check.key] = record
        return Decision(True, -1, after, in_use)

    async def settle(
        self,
        adjustments: Sequence[tuple[Check, Outcome, int]],
        slot: Slot | None,
        token: str,
    ) -> None:
        now = _now_ms()
        for check, outcome, actual in adjustments:
            delta = actual - check.cost
            if delta == 0:
                continue
            window_ms = check.window * 1000
            if self._code == 3:
                entries = self._entries.setdefault(check.key, [])
                for position, (stamp, owner, amount) in enumerate(entries):
                    if owner == token:
                        entries[position] = (stamp, owner, max(0, amount + delta))
                        break
                else:
                    if delta > 0:
                        entries.append((now, token, delta))
                continue
            record = self._counters.get(check.key)
            if record is not None and record[0] == outcome.charged_window:
                record[1] = max(0, record[1] + delta)
            elif record is not None and record[0] == outcome.charged_window + 1:
                record[2] = max(0, record[2] + delta)
            elif delta > 0:
                record, _, _ = self._counter(check.key, window_ms, now)
                record[1] += delta
                self._counters[check.key] = record
        if slot is not None:
            leases = self._slots.get(slot.key)
            if leases is not None:
                leases.pop(token, None)
                if not leases:
                    del self._slots[slot.key]

    async def renew(self, slot: Slot, token: str) -> None:
        leases = self._slots.get(slot.key)
        if leases is not None and token in leases:
            leases[token] = _now_ms() + int(slot.lease * 1000)

    def _sweep(self, now: int) -> None:
        # keys of callers that went quiet would otherwise stay forever
        self._operations += 1
        if self._operations % self._SWEEP_EVERY:
            return
        self._counters = {k: r for k, r in self._counters.items() if r[0] >= now // r[3] - 1}
        self._entries = {
            k: kept
            for k, entries in self._entries.items()
            if (kept := [e for e in entries if e[0] > now - self._windows.get(k, 0)])
        }
        self._windows = {k: w for k, w in self._windows.items() if k in self._entries}
        self._slots = {
            k: alive
            for k, leases in self._slots.items()
            if (alive := {t: e for t, e in leases.items() if e > now})
        }
