"""Slot releases that the store could not take when they were due, retried once it answers.

A request that held a concurrency slot while the store was down (or frozen) could not release
it; neither could a request whose ``acquire`` timed out on our side but may still run on the
server when it catches up (the script was sent). Left alone, such slots stay taken until their
lease expires (``concurrency_lease``, a minute by default), and a caller at its limit is
refused meanwhile. Releasing a slot is idempotent (it removes the request's own lease), so it
is safe to repeat: one background task per middleware pings the store until it answers, then
sends the releases. Because the ping is answered before the releases are sent, they reach the
server after whatever it had queued during the outage, late ``acquire`` scripts included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final

from ..exceptions import StoreUnavailable
from ._engine import Engine, Slot

__all__ = ["DeferredReleases"]

logger = logging.getLogger("aimiddleware.ratelimit")

# at most this many releases wait; beyond, the lease is left to expire on its own
MAX_PENDING: Final = 10_000
# pause between two pings while the store does not answer (each ping waits up to the timeout)
RETRY_EVERY: Final = 0.1


class DeferredReleases:
    """The releases still owed to the store, and the task that pays them.

    >>> from aimiddleware.ratelimit._memory import MemoryEngine
    >>> releases = DeferredReleases(MemoryEngine("sliding-window"))
    >>> releases.pending
    0
    """

    __slots__ = ("_engine", "_pending", "_task")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # (slot, request token) -> monotonic time its lease lapses anyway
        self._pending: dict[tuple[Slot, str], float] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """How many releases wait for the store."""
        return len(self._pending)

    def defer(self, slot: Slot, token: str, reason: StoreUnavailable) -> None:
        """Release ``token``'s lease in ``slot`` once the store answers again."""
        if len(self._pending) >= MAX_PENDING:
            return  # bounded: this one lapses with its lease
        self._pending[(slot, token)] = time.monotonic() + slot.lease
        if self._task is None or self._task.done():
            logger.warning(
                "rate limit store unavailable (%s): slot releases are retried in the "
                "background until it answers",
                reason,
            )
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            try:
                await self._engine.ping()
            except StoreUnavailable:
                await asyncio.sleep(RETRY_EVERY)
                continue
            now = time.monotonic()
            batch = list(self._pending.items())
            for (slot, token), lapses in batch:
                if lapses <= now:
                    del self._pending[(slot, token)]
                    continue
                try:
                    await self._engine.settle((), slot, token)
                except StoreUnavailable:
                    break  # down again: back to pinging
                self._pending.pop((slot, token), None)

    async def aclose(self) -> None:
        """Stop retrying (application shutdown): what is left lapses with its leases."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pending.clear()
