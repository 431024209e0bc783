"""The memory engine: the counts of one process, with the rules of the Redis script.

Every operation is plain synchronous code (``acquire_now``, ``settle_now``): nothing in it
waits, so it is atomic on the event loop and the middleware calls it without building a
coroutine. The async ``acquire``/``settle`` of the :class:`Engine` interface wrap them.

``limits``' own memory storage is not used: it takes a lock, builds a key and reads the clock
per limit, and has neither refunds nor all-or-nothing over several limits, so a request with
three limits paid for each of them three times over. The algorithms are the same (sliding
window counter with the previous window weighted and floored, fixed window, moving window).

Each table (counters, moving-window entries, concurrency slots) holds at most ``max_keys``
keys: a key past its last window goes first, then the least recently used one (see
:mod:`aimiddleware._lru`), so callers that each bring a new identity cannot grow memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import time
from typing import ClassVar, Final

from .._lru import LRUCache
from ._engine import Check, Decision, Engine, Outcome, Slot, fits_at, new_outcome
from ._memory_settle import Counter, Entry, MemorySettlement

__all__ = ["DEFAULT_MAX_KEYS", "MemoryEngine"]

DEFAULT_MAX_KEYS: Final = 100_000


class MemoryEngine(MemorySettlement, Engine):
    """Counts in this process only: right for one worker, tests and development.

    >>> engine = MemoryEngine("sliding-window")
    >>> engine.acquire_now([Check("k:requests:60", 2, 60, 1)], None, "t1").allowed
    True
    """

    backend: ClassVar[str] = "memory"

    def __init__(self, strategy: str, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        super().__init__(strategy)
        # deadlines in ms: a counter is useless once its window and the next one are over
        self._counters: LRUCache[str, Counter] = LRUCache("rate limit counters", max_keys)
        # moving windows: key -> entries oldest first, until the newest leaves its window
        self._entries: LRUCache[str, list[Entry]] = LRUCache("rate limit windows", max_keys)
        # slots: key -> {token: lease expiry ms}, until the last lease lapses
        self._slots: LRUCache[str, dict[str, int]] = LRUCache("rate limit slots", max_keys)

    @property
    def max_keys(self) -> int:
        return self._counters.max_entries

    @property
    def evictions(self) -> int:
        """Live keys dropped so far from a full table."""
        return self._counters.evictions + self._entries.evictions + self._slots.evictions

    # -- the interface ------------------------------------------------------------------------

    async def acquire(self, checks: Sequence[Check], slot: Slot | None, token: str) -> Decision:
        return self.acquire_now(checks, slot, token)

    async def settle(
        self,
        adjustments: Sequence[tuple[Check, Outcome, int]],
        slot: Slot | None,
        token: str,
        alerts: Sequence[float] = (),
    ) -> list[int]:
        return self.settle_now(adjustments, slot, token, alerts)

    async def renew(self, slot: Slot, token: str) -> None:
        now = int(time() * 1000)
        node = self._slots.node(slot.key, now)
        if node is not None and token in node.value:
            expiry = node.value[token] = now + int(slot.lease * 1000)
            if expiry > node.deadline:
                self._slots.touch(slot.key, node, expiry + int(slot.lease * 1000))

    # -- acquire ------------------------------------------------------------------------------

    def acquire_now(self, checks: Sequence[Check], slot: Slot | None, token: str) -> Decision:
        """Check every limit and the slot; charge all of them only if none rejects."""
        now = int(time() * 1000)
        if self._code == 3:
            return self._acquire_moving(checks, slot, token, now)
        sliding = self._code == 1
        counters = self._counters
        node_of = counters.node
        # (record shifted to now, used, ms into the window) per check
        staged: list[tuple[Counter, int, int]] = []
        failed = -1
        for key, limit, window, cost, period in checks:
            if period:
                record, used, elapsed = self._stage_budget(key, period, now)
            else:
                window_ms = window * 1000
                index = now // window_ms
                node = node_of(key, now)
                if node is None:
                    record = [index, 0, 0, window_ms]
                else:
                    record = node.value
                    if record[0] < index - 1:
                        record = [index, 0, 0, window_ms]
                    elif record[0] == index - 1:
                        record = [index, 0, record[1], window_ms]
                elapsed = now - index * window_ms
                used = record[1]
                if sliding and record[2]:
                    used += record[2] * (window_ms - elapsed) // window_ms
            if failed < 0 and used + cost > limit:
                failed = len(staged)
            staged.append((record, used, elapsed))
        in_use = self._take_slot(slot, token, now, failed < 0) if slot is not None else 0
        if in_use < 0:
            failed, in_use = len(checks), ~in_use
        if failed >= 0:
            return Decision(False, failed, self._counter_state(checks, staged), in_use)
        outcomes = []
        for position, (record, used, elapsed) in enumerate(staged):
            key, limit, _, cost, _ = checks[position]
            if record[1] == 0:  # a new window's record: (re)stored, kept one window more
                counters.put(key, record, now, now - elapsed + 2 * record[3])
            record[1] += cost
            left = limit - used - cost
            outcomes.append(
                new_outcome((left if left > 0 else 0, record[3] - elapsed, 0, record[0]))
            )
        return Decision(True, -1, outcomes, in_use)

    def _counter_state(
        self, checks: Sequence[Check], staged: list[tuple[Counter, int, int]]
    ) -> list[Outcome]:
        """The limits as found, with how long until the same cost would fit (a rejection)."""
        outcomes = []
        for (_, limit, _, cost, period), (record, used, elapsed) in zip(
            checks, staged, strict=True
        ):
            window_ms, current, previous = record[3], record[1], record[2]
            if self._code == 2 or period:  # a budget fits again when its period ends
                retry = window_ms - elapsed
            elif current + cost <= limit and previous > 0:
                # the weighted count is floor(previous * (window - t) / window): it fits once
                # that drops below (room + 1), i.e. at t > window * (1 - (room + 1) / previous)
                room = limit - cost - current
                retry = max(fits_at(window_ms, room, previous) - elapsed, 1)
            else:
                retry = window_ms - elapsed
                if current > 0 and cost <= limit:
                    retry += fits_at(window_ms, limit - cost, current)
            if used + cost <= limit:
                retry = 0
            remaining = limit - used if used < limit else 0
            outcomes.append(Outcome(remaining, window_ms - elapsed, retry, record[0]))
        return outcomes

    def _acquire_moving(
        self, checks: Sequence[Check], slot: Slot | None, token: str, now: int
    ) -> Decision:
        before: list[Outcome] = []
        found: list[list[Entry]] = []
        # a budget's record per position (its period is calendar, whatever the strategy)
        budgets: dict[int, Counter] = {}
        failed = -1
        for position, (key, limit, window, cost, period) in enumerate(checks):
            if period:
                record, used, elapsed = self._stage_budget(key, period, now)
                budgets[position] = record
                reset = retry = record[3] - elapsed
                found.append([])
            else:
                window_ms = window * 1000
                entries = [e for e in self._entries.get(key, now) or () if e[0] > now - window_ms]
                used = sum(e[2] for e in entries)
                reset = (entries[0][0] + window_ms - now) if entries else window_ms
                retry = window_ms
                if cost <= limit:
                    freed = 0
                    for stamp, _, amount in entries:
                        freed += amount
                        if used - freed + cost <= limit:
                            retry = stamp + window_ms - now
                            break
                found.append(entries)
            if used + cost > limit:
                if failed < 0:
                    failed = position
            else:
                retry = 0
            index = budgets[position][0] if period else 0
            before.append(Outcome(limit - used if used < limit else 0, reset, retry, index))
        in_use = self._take_slot(slot, token, now, failed < 0)
        if in_use < 0:
            failed, in_use = len(checks), ~in_use
        if failed >= 0:
            return Decision(False, failed, before, in_use)
        for position, ((key, _, window, cost, _), entries) in enumerate(
            zip(checks, found, strict=True)
        ):
            budget = budgets.get(position)
            if budget is not None:
                if budget[1] == 0:
                    self._counters.put(key, budget, now, now + 2 * budget[3])
                budget[1] += cost
                continue
            entries.append((now, token, cost))
            self._entries.put(key, entries, now, now + window * 1000)
        after = [
            Outcome(max(0, o.remaining - check.cost), o.reset_ms, 0, o.charged_window)
            for check, o in zip(checks, before, strict=True)
        ]
        return Decision(True, -1, after, in_use)

    def _take_slot(self, slot: Slot | None, token: str, now: int, take: bool) -> int:
        """Slots in use after taking one (when ``take`` and there is room); ``~in_use`` when
        the set is full."""
        if slot is None:
            return 0
        lease_ms = int(slot.lease * 1000)
        node = self._slots.node(slot.key, now)
        if node is None:
            # the set outlives its last lease by up to one lease more: its deadline moves (a
            # heap push) once a lease period rather than on every request
            node = self._slots.put(slot.key, {}, now, now + 2 * lease_ms)
        leases = node.value
        if len(leases) >= slot.limit:  # only a full set can hold leases that lapsed
            for expired in [t for t, e in leases.items() if e <= now]:
                del leases[expired]
        in_use = len(leases)
        if not take:
            return in_use
        if in_use >= slot.limit:
            return ~in_use
        expiry = leases[token] = now + lease_ms
        if expiry > node.deadline:
            self._slots.touch(slot.key, node, expiry + lease_ms)
        return in_use + 1
