"""The memory engine's settlement: token reservations moved to the real cost, budgets settled
in the period they were charged in, and alert thresholds reported once per period."""

from __future__ import annotations

from collections.abc import Sequence
from time import time

from .._lru import LRUCache
from ._budgets import period_bounds
from ._engine import Check, Outcome, Slot, alert_crossing

__all__ = ["MemorySettlement"]

# a counter window: [window index, current count, previous count, window ms]; a budget's
# record has a fifth item, the alert thresholds reported this period
Counter = list[int]
# a moving-window entry: (timestamp ms, token, amount)
Entry = tuple[int, str, int]


class MemorySettlement:
    """What :class:`~aimiddleware.ratelimit._memory.MemoryEngine` does after a response."""

    _code: int
    _counters: LRUCache[str, Counter]
    _entries: LRUCache[str, list[Entry]]
    _slots: LRUCache[str, dict[str, int]]

    def _stage_budget(self, key: str, period: int, now: int) -> tuple[Counter, int, int]:
        """A budget's record for the calendar period holding ``now``, its total, ms into it.

        The record is ``[period index, total, 0, period ms, alerts reported]``.
        """
        index, start, end = period_bounds(now, period)
        node = self._counters.node(key, now)
        if node is None or node.value[0] != index:
            return [index, 0, 0, end - start, 0], 0, now - start
        return node.value, node.value[1], now - start

    def settle_now(
        self,
        adjustments: Sequence[tuple[Check, Outcome, int]],
        slot: Slot | None,
        token: str,
        alerts: Sequence[float] = (),
    ) -> list[int]:
        """Move token reservations to the real cost, in the window charged; free the slot.

        Returns the alert crossed per adjustment (see :meth:`Engine.settle`).
        """
        crossed: list[int] = []
        if adjustments:
            crossed = self._adjust(adjustments, token, int(time() * 1000), alerts)
        if slot is not None:
            # an empty set stays until its deadline: the caller's next request reuses it
            leases = self._slots.get(slot.key, int(time() * 1000))
            if leases is not None:
                leases.pop(token, None)
        return crossed

    def _adjust(
        self,
        adjustments: Sequence[tuple[Check, Outcome, int]],
        token: str,
        now: int,
        alerts: Sequence[float],
    ) -> list[int]:
        crossed = []
        for check, outcome, actual in adjustments:
            delta = actual - check.cost
            if check.period:
                crossed.append(self._adjust_budget(check, outcome, delta, now, alerts))
                continue
            crossed.append(-1)
            if delta == 0:
                continue
            if self._code == 3:
                entries = self._entries.get(check.key, now) or []
                for position, (stamp, owner, amount) in enumerate(entries):
                    if owner == token:
                        entries[position] = (stamp, owner, max(0, amount + delta))
                        break
                else:
                    if delta > 0:
                        entries.append((now, token, delta))
                        self._entries.put(check.key, entries, now, now + check.window * 1000)
                continue
            record = self._counters.get(check.key, now)
            if record is not None and record[0] == outcome.charged_window:
                record[1] = max(0, record[1] + delta)
            elif record is not None and record[0] == outcome.charged_window + 1:
                record[2] = max(0, record[2] + delta)
            elif delta > 0:
                window_ms = check.window * 1000
                index = now // window_ms
                if record is None or record[0] < index - 1:
                    record = [index, 0, 0, window_ms]
                elif record[0] == index - 1:
                    record = [index, 0, record[1], window_ms]
                if record[1] == 0:
                    self._counters.put(check.key, record, now, (record[0] + 2) * record[3])
                record[1] += delta
        return crossed

    def _adjust_budget(
        self, check: Check, outcome: Outcome, delta: int, now: int, alerts: Sequence[float]
    ) -> int:
        """Settle a budget in the period it was charged in (a refund after that period ended
        goes nowhere; a surcharge goes to the period now); the alert it crossed, or -1."""
        record = self._counters.get(check.key, now)
        if record is None or record[0] != outcome.charged_window:
            if delta <= 0:
                return -1
            record, _, elapsed = self._stage_budget(check.key, check.period, now)
            if record[1] == 0:
                self._counters.put(check.key, record, now, now - elapsed + 2 * record[3])
        record[1] = max(0, record[1] + delta)
        if not alerts:
            return -1
        record[4], position = alert_crossing(record[4], record[1], check.limit, alerts)
        return position
