"""One periodic check of every body read in progress, per event loop.

A timer per request (``loop.call_at``, or ``asyncio.timeout`` per read) costs more than the
rest of the guard together; the deadline of a slow upload does not need that precision. The
watch checks its reads every ``tick`` seconds and runs only while some are in progress.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["FirstRead", "Watch"]


class Expiring(Protocol):
    deadline: float

    def expire(self) -> None: ...


class Watch:
    """The body reads of one event loop that have a deadline."""

    __slots__ = ("_handle", "loop", "reads", "tick")

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float) -> None:
        self.loop = loop
        self.tick = tick
        self.reads: set[Expiring] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, read: Expiring) -> None:
        self.reads.add(read)
        if self._handle is None:
            self._handle = self.loop.call_later(self.tick, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        late = [read for read in self.reads if read.deadline <= now]
        for read in late:
            self.reads.discard(read)
            read.expire()
        self._handle = self.loop.call_later(self.tick, self._sweep) if self.reads else None


class FirstRead:
    """The read the guard itself makes before the app runs; interrupted at the deadline."""

    __slots__ = ("deadline", "expired", "task")

    def __init__(self, deadline: float, task: asyncio.Task[object] | None) -> None:
        self.deadline = deadline
        self.task = task
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        if self.task is not None:
            self.task.cancel()
