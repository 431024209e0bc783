"""The line of requests waiting for a model instance: first come first served within a tier,
weighted between tiers.

People at an interactive UI should not wait behind an agent's batch, and an agent's batch
should not wait forever behind people. Each tier has a weight; while several tiers wait, the
instances that come free are shared between them in proportion to their weights (stride
scheduling): with ``human`` at 4 and ``agent`` at 1, four of every five instances go to people
and one to agents, so a person who arrives behind eight waiting agent requests is served next,
and agents are never starved. A tier that had nobody waiting joins at the line's current
position, so idle time banks no credit. With priority off, every tier has one line.

Deterministic: the order depends only on arrivals and releases, never on a clock. In a running
event loop, ``WaitLine({"human": 4, "agent": 1})`` joined by ``agent``, ``agent``, ``human``
grants its next instance to ``human``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

__all__ = ["WaitLine"]

T = TypeVar("T")

_ONE_LINE = ""  # the tier every request is in when priority is off


class _Tier:
    __slots__ = ("pass_", "stride", "waiters")

    def __init__(self, weight: float) -> None:
        self.stride = 1.0 / weight
        self.pass_ = 0.0  # where the tier stands; the lowest waiting one is served next
        self.waiters: deque[tuple[str, asyncio.Future[Any]]] = deque()


class WaitLine(Generic[T]):
    """Waiters per tier; :meth:`grant` hands an item (an instance) to the one served next.

    ``weights`` maps tier names to weights (> 0); a tier not named weighs ``default_weight``.
    ``weights=None`` turns priority off: one first-come first-served line.
    """

    def __init__(self, weights: Mapping[str, float] | None, *, default_weight: float = 1.0) -> None:
        for name, weight in (weights or {}).items():
            if not weight > 0:
                raise ValueError(f"the weight of tier {name!r} must be > 0, not {weight!r}")
        if not default_weight > 0:
            raise ValueError(f"default_weight must be > 0, not {default_weight!r}")
        self._weights = dict(weights) if weights is not None else None
        self._default = default_weight
        self._tiers: dict[str, _Tier] = {}
        self._clock = 0.0  # the pass of the last tier served: where a returning tier joins

    def _tier(self, name: str) -> _Tier:
        tier = self._tiers.get(name)
        if tier is None:
            weights = self._weights
            weight = self._default if weights is None else weights.get(name, self._default)
            tier = self._tiers[name] = _Tier(weight)
        return tier

    def _line_of(self, tier: str) -> str:
        return tier if self._weights is not None else _ONE_LINE

    def join(self, tier: str) -> asyncio.Future[T]:
        """A place in ``tier``'s line: the future gets the item :meth:`grant` hands it."""
        line = self._tier(self._line_of(tier))
        if not line.waiters:
            line.pass_ = max(line.pass_, self._clock)  # idle time banks no credit
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        line.waiters.append((tier, future))
        return future

    def leave(self, future: asyncio.Future[Any]) -> None:
        """Take a waiter out of the line (it gave up: deadline, client gone)."""
        for line in self._tiers.values():
            for entry in line.waiters:
                if entry[1] is future:
                    line.waiters.remove(entry)
                    return

    def grant(self, item: T) -> str | None:
        """Hand ``item`` to the waiter served next; its tier, or ``None`` when nobody waits."""
        while True:
            chosen: _Tier | None = None
            for line in self._tiers.values():
                # the lowest pass is served; on a tie, the heavier tier (people before agents)
                if line.waiters and (
                    chosen is None
                    or line.pass_ < chosen.pass_
                    or (line.pass_ == chosen.pass_ and line.stride < chosen.stride)
                ):
                    chosen = line
            if chosen is None:
                return None
            tier, future = chosen.waiters.popleft()
            if future.done():  # cancelled, not yet out of the line
                continue
            self._clock = chosen.pass_
            chosen.pass_ += chosen.stride
            future.set_result(item)
            return tier

    def waiting(self) -> dict[str, int]:
        """How many wait, per tier (as the requests named it)."""
        counts: dict[str, int] = {}
        for line in self._tiers.values():
            for tier, future in line.waiters:
                if not future.done():
                    counts[tier] = counts.get(tier, 0) + 1
        return counts

    def __len__(self) -> int:
        return sum(
            1 for line in self._tiers.values() for _, future in line.waiters if not future.done()
        )
