"""Where one middleware's counts live: its engine, the slot releases it owes, request tokens."""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Sequence

import anyio

from ..exceptions import StoreUnavailable
from ._engine import Check, Decision, Engine, Outcome, Slot
from ._memory import MemoryEngine
from ._options import RateLimitOptions
from ._plan import Ticket
from ._releases import DeferredReleases
from ._storage import engine_from_url

__all__ = ["Counter"]

logger = logging.getLogger("aimiddleware.ratelimit")


class Counter:
    """The store side of one middleware: check and charge a ticket, settle it, renew its slot.

    Built once from the options; every request of the middleware goes through the same one.
    A slot release the store could not take is retried in the background
    (:class:`DeferredReleases`), as the store answers again.
    """

    __slots__ = ("_moving", "_releases", "_token_prefix", "_tokens", "engine", "memory")

    def __init__(self, config: RateLimitOptions) -> None:
        self.engine: Engine = engine_from_url(
            config.store, strategy=config.strategy, timeout=config.timeout
        )
        # the memory engine is called synchronously: nothing in it waits
        self.memory = self.engine if isinstance(self.engine, MemoryEngine) else None
        self._moving = config.strategy == "moving-window"
        self._releases = DeferredReleases(self.engine)
        # slot leases and moving-window entries need a token unique across workers
        self._token_prefix = secrets.token_hex(6) + "."
        self._tokens = itertools.count()

    def acquire_now(self, ticket: Ticket) -> Decision:
        """:meth:`acquire` on the memory engine, as a plain call (nothing in it waits)."""
        assert self.memory is not None
        if ticket.slot is not None or self._moving:
            ticket.token = f"{self._token_prefix}{next(self._tokens)}"
        return self.memory.acquire_now(ticket.checks, ticket.slot, ticket.token)

    async def acquire(self, ticket: Ticket) -> Decision:
        """Check and charge every limit of ``ticket`` at once (all or nothing).

        :raises StoreUnavailable: the store did not answer; a slot the check may still take
            when the store catches up is queued for release.
        """
        slot = ticket.slot
        if slot is not None or self._moving:
            # slot leases and moving-window entries are told apart by the request's token
            ticket.token = f"{self._token_prefix}{next(self._tokens)}"
        if self.memory is not None:
            return self.memory.acquire_now(ticket.checks, slot, ticket.token)
        try:
            return await self.engine.acquire(ticket.checks, slot, ticket.token)
        except StoreUnavailable as exc:
            if slot is not None:
                # the script may still run when the store catches up: take that slot back
                self._releases.defer(slot, ticket.token, exc)
            raise

    async def settle(
        self,
        adjustments: Sequence[tuple[Check, Outcome, int]],
        slot: Slot | None,
        token: str,
    ) -> None:
        """Settle one request: token adjustments and the slot's release."""
        if self.memory is not None:
            self.memory.settle_now(adjustments, slot, token)  # never suspends: not cancellable
            return
        # runs even when the request was cancelled (client gone): the slot must come back now
        with anyio.CancelScope(shield=True):
            try:
                await self.engine.settle(adjustments, slot, token)
            except StoreUnavailable as exc:
                # the slot is retried once the store answers; token adjustments are not
                # (they are not idempotent: the script may have run), the reservation stands
                if slot is not None:
                    self._releases.defer(slot, token, exc)
                else:
                    logger.warning("rate limit settlement failed, the reservation stands: %s", exc)

    async def renew(self, slot: Slot, token: str) -> None:
        """Extend the lease of a slot a long response still holds."""
        try:
            await self.engine.renew(slot, token)
        except StoreUnavailable as exc:
            logger.warning("rate limit slot renewal failed, the lease may lapse: %s", exc)

    async def aclose(self) -> None:
        """Stop retrying releases and close the store's connections."""
        await self._releases.aclose()
        await self.engine.aclose()
