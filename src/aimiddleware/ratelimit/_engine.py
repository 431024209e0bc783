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

Budgets (spend per calendar day or month) are checks like the others, charged all or nothing
with them; settling one also says which alert thresholds its total crossed, once per period.

The window algorithms are those of the ``limits`` package (sliding window counter, fixed
window, moving window), kept in one record per limit so that a refund can reach the window
that was charged. The memory engine and the Redis script implement the same rules.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar, Final, NamedTuple

__all__ = [
    "STRATEGY_CODES",
    "Check",
    "Decision",
    "Engine",
    "Outcome",
    "Slot",
    "alert_crossing",
    "fits_at",
    "new_check",
    "new_outcome",
]

# the codes the Redis script understands
STRATEGY_CODES: Final = {"sliding-window": 1, "fixed-window": 2, "moving-window": 3}


class Check(NamedTuple):
    """One limit of a request: ``cost`` units against ``limit`` per ``window`` seconds.

    ``period`` 0 counts over the middleware's strategy; a budget counts over a calendar
    period instead (1: the UTC day, 2: the UTC month; ``window`` is then unused), the same
    for every strategy: its total resets when the period ends.
    """

    key: str
    limit: int
    window: int
    cost: int
    period: int = 0


class Slot(NamedTuple):
    """A concurrency slot: at most ``limit`` leases in ``key``; this request's is ``token``."""

    key: str
    limit: int
    lease: float


class Outcome(NamedTuple):
    """The state of one limit after ``acquire``: what is left, when the window resets (ms),
    how long to wait before the same cost would fit (ms), and the window that was charged.

    Milliseconds, as both engines count them: the headers are written from them directly.
    """

    remaining: int
    reset_ms: int
    retry_ms: int
    charged_window: int


# an Outcome (a Check) from a tuple of its fields without a Python-level __new__: per request
new_outcome: Final[Callable[[tuple[int, int, int, int]], Outcome]] = partial(tuple.__new__, Outcome)
new_check: Final[Callable[[tuple[str, int, int, int, int]], Check]] = partial(tuple.__new__, Check)


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
        alerts: Sequence[float] = (),
    ) -> list[int]:
        """``adjustments``: (check as acquired, its outcome, the real cost).

        Returns, per adjustment, the index in ``alerts`` (fractions of the limit, ascending)
        of the highest threshold a budget's total reached for the first time this period, or
        -1: each threshold is reported once per period and budget, across workers.
        """

    @abstractmethod
    async def renew(self, slot: Slot, token: str) -> None: ...

    async def ping(self) -> None:  # noqa: B027 (nothing to check in memory)
        """Raise ``StoreUnavailable`` if the backend does not answer."""

    async def aclose(self) -> None:  # noqa: B027
        """Release connections."""


def fits_at(window_ms: int, room: int, previous: int) -> int:
    """Milliseconds into a window after which ``previous``'s weighted share leaves ``room``."""
    if room + 1 >= previous:
        return 0
    return math.floor(window_ms * (1 - (room + 1) / previous)) + 1


def alert_crossing(
    alerted: int, total: int, limit: int, alerts: Sequence[float]
) -> tuple[int, int]:
    """(thresholds reached, index of the highest one newly reached or -1) for a budget whose
    total is ``total`` after ``alerted`` of its ``alerts`` were already reported this period.

    >>> alert_crossing(0, 85, 100, (0.8, 1.0)), alert_crossing(1, 90, 100, (0.8, 1.0))
    ((1, 0), (1, -1))
    """
    reached = 0
    for threshold in alerts:
        # to the nearest unit, as the Redis script rounds it: 90 % of 260,000 is 234,000
        if total >= math.floor(limit * threshold + 0.5):
            reached += 1
    return (reached, reached - 1) if reached > alerted else (alerted, -1)
