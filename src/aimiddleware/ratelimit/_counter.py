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

    __slots__ = (
        "_moving",
        "_releases",
        "_token_prefix",
        "_tokens",
        "alerts",
        "currency",
        "engine",
        "memory",
    )

    def __init__(self, config: RateLimitOptions) -> None:
        self.engine: Engine = engine_from_url(
            config.store, strategy=config.strategy, timeout=config.timeout
        )
        # the memory engine is called synchronously: nothing in it waits
        self.memory = self.engine if isinstance(self.engine, MemoryEngine) else None
        self._moving = config.strategy == "moving-window"
        # budget alert thresholds (fractions, ascending) and the prices' currency
        self.alerts = tuple(config.budget_alerts)
        self.currency = config.prices.currency if config.prices is not None else ""
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

        A tier-wide budget is counted under the tier's hash tag, not the caller's: on Redis
        it is charged by a second script once the caller's own limits are charged, and
        those are refunded if it refuses (so it is never overshot; a request it refuses
        held the caller's limits for one round trip).

        :raises StoreUnavailable: the store did not answer; a slot the check may still take
            when the store catches up is queued for release.
        """
        slot = ticket.slot
        if slot is not None or self._moving:
            # slot leases and moving-window entries are told apart by the request's token
            ticket.token = f"{self._token_prefix}{next(self._tokens)}"
        if self.memory is not None:
            return self.memory.acquire_now(ticket.checks, slot, ticket.token)
        checks = ticket.checks
        shared = ticket.plan.shared_from
        try:
            if shared >= len(checks):
                return await self.engine.acquire(checks, slot, ticket.token)
            own = await self.engine.acquire(checks[:shared], slot, ticket.token)
            if not own.allowed:
                if own.failed == shared:  # the slot: after every check, whichever script
                    own.failed = len(checks)
                return own
            tier = await self._acquire_shared(ticket, own)
        except StoreUnavailable as exc:
            if slot is not None:
                # the script may still run when the store catches up: take that slot back
                self._releases.defer(slot, ticket.token, exc)
            raise
        return tier

    async def _acquire_shared(self, ticket: Ticket, own: Decision) -> Decision:
        """The tier-wide budgets, after the caller's own limits were charged (``own``)."""
        checks, shared = ticket.checks, ticket.plan.shared_from
        try:
            tier = await self.engine.acquire(checks[shared:], None, ticket.token)
        except StoreUnavailable:
            await self._refund(ticket, own)
            raise
        outcomes = [*own.outcomes, *tier.outcomes]
        if tier.allowed:
            return Decision(True, -1, outcomes, own.slots_in_use)
        await self._refund(ticket, own)
        return Decision(False, shared + tier.failed, outcomes, own.slots_in_use)

    async def _refund(self, ticket: Ticket, own: Decision) -> None:
        """Give back what a request refused by a tier-wide budget was charged of its own."""
        checks = ticket.checks[: ticket.plan.shared_from]
        refunds = [(c, o, 0) for c, o in zip(checks, own.outcomes, strict=True) if c.cost]
        await self.settle(refunds, ticket.slot, ticket.token)

    async def settle(
        self,
        adjustments: Sequence[tuple[Check, Outcome, int]],
        slot: Slot | None,
        token: str,
        split: int | None = None,
    ) -> list[int]:
        """Settle one request: token and budget adjustments and the slot's release.

        ``split``: where the tier-wide budgets start in ``adjustments`` (settled by a script
        of their own on Redis). Returns the alert each adjustment crossed (``Engine.settle``).
        """
        alerts = self.alerts
        if self.memory is not None:
            # never suspends: not cancellable
            return self.memory.settle_now(adjustments, slot, token, alerts)
        if split is None or split >= len(adjustments):
            return await self._settle(adjustments, slot, token)
        own = await self._settle(adjustments[:split], slot, token)
        tier = await self._settle(adjustments[split:], None, token)
        return [*(own or [-1] * split), *(tier or [-1] * (len(adjustments) - split))]

    async def _settle(
        self, adjustments: Sequence[tuple[Check, Outcome, int]], slot: Slot | None, token: str
    ) -> list[int]:
        # runs even when the request was cancelled (client gone): the slot must come back now
        with anyio.CancelScope(shield=True):
            try:
                return await self.engine.settle(adjustments, slot, token, self.alerts)
            except StoreUnavailable as exc:
                # the slot is retried once the store answers; token adjustments are not
                # (they are not idempotent: the script may have run), the reservation stands
                if slot is not None:
                    self._releases.defer(slot, token, exc)
                else:
                    logger.warning("rate limit settlement failed, the reservation stands: %s", exc)
        return []

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
