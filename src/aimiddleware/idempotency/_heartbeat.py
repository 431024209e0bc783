"""Lease renewal for every running execution of one middleware, on one timer.

A timer per request (``call_later`` and its ``cancel``) costs a heap push with Python-level
comparisons and a cancelled handle for the loop to sweep, on every request, though almost
every request ends long before its first renewal is due. Here a request only appends itself
to a queue; one timer, armed for the head of the queue, renews the executions still running
when their turn comes. Deadlines are ``start + interval`` with one constant interval, so the
queue is in deadline order by construction and needs no heap.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from typing import Protocol

__all__ = ["Beating", "Heartbeats"]


class Beating(Protocol):
    """What the scheduler needs of an execution."""

    @property
    def done(self) -> bool:
        """The execution ended: its lease is no longer renewed."""

    def beat(self) -> None:
        """Renew the lease now (start the renewal; never blocks)."""


class Heartbeats:
    """Call ``beat()`` on each registered execution every ``interval`` seconds until it is done.

    Finished executions are dropped lazily when they reach the head of the queue; the queue
    holds only weak references, so a finished request is never kept alive by it.

    >>> heartbeats = Heartbeats(10.0)  # doctest: +SKIP
    >>> heartbeats.add(execution)  # doctest: +SKIP
    """

    __slots__ = ("_interval", "_loop", "_queue", "_timer")

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._queue: deque[tuple[float, weakref.ref[Beating]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, execution: Beating) -> None:
        """Renew ``execution`` ``interval`` seconds from now, and every interval after that."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # a middleware served from another loop (a new test, a restarted server): the old
            # loop's timer can never fire here, and its executions ended with it
            self._queue.clear()
            self._timer = None
            self._loop = loop
        self._queue.append((loop.time() + self._interval, weakref.ref(execution)))
        if self._timer is None:
            self._timer = loop.call_at(self._queue[0][0], self._fire)

    def _fire(self) -> None:
        loop = self._loop
        assert loop is not None  # armed only from add(), which sets it
        self._timer = None
        queue = self._queue
        now = loop.time()
        due: list[Beating] = []
        # a timer may fire a hair before its time: a renewal 1 ms early is harmless, a second
        # wake-up for it is not free
        while queue and queue[0][0] <= now + 0.001:
            _, ref = queue.popleft()
            execution = ref()
            if execution is not None and not execution.done:
                due.append(execution)
        for execution in due:
            # appended after the pass above: a renewed execution never comes due twice at once
            queue.append((now + self._interval, weakref.ref(execution)))
            execution.beat()
        if queue:
            self._timer = loop.call_at(queue[0][0], self._fire)
