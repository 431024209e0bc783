"""The Redis engine: one Lua script per operation, on the store layer's shared client.

A request has several limits (requests, tokens, per-model, a concurrency slot) that must be
charged all or nothing, token reservations that must be refunded, and slots that must expire
with their lease. Those are the three scripts below, run on the ``redis.asyncio`` client that
:func:`aimiddleware.stores.clients.open_redis` shares between every middleware naming the same
URL. Every key of one request carries the same hash tag, so on Redis Cluster each script runs
in one slot. Time is the server's (``TIME``), so workers with skewed clocks agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from ..stores.clients import RedisLease
from ._engine import Check, Decision, Engine, Outcome, Slot
from ._scripts import ACQUIRE, RENEW, SETTLE

__all__ = ["RedisEngine"]


class RedisEngine(Engine):
    """Counts shared by every worker, on Redis or Redis Cluster.

    ``lease`` holds a ``redis.asyncio`` client (single node or cluster) of the store layer,
    usually shared with the other middlewares on the same URL; every call is bounded by its
    timeout, as the stores' are (:class:`~aimiddleware.stores.clients.RedisCalls`).
    :meth:`aclose` gives the lease back: the client closes with its last user.
    """

    backend: ClassVar[str] = "redis"
    shared: ClassVar[bool] = True

    def __init__(self, lease: RedisLease, *, strategy: str) -> None:
        super().__init__(strategy)
        self._lease = lease
        self._client: Any = lease.client
        self._call = lease.call
        self._acquire = self._client.register_script(ACQUIRE)
        self._settle = self._client.register_script(SETTLE)
        self._renew = self._client.register_script(RENEW)

    async def acquire(self, checks: Sequence[Check], slot: Slot | None, token: str) -> Decision:
        keys = [c.key for c in checks]
        args: list[int | str] = [self._code, len(checks), token, 0, 0]
        if slot is not None:
            keys.append(slot.key)
            args[3], args[4] = slot.limit, max(1, int(slot.lease * 1000))
        for check in checks:
            args += [check.limit, check.window * 1000, check.cost, check.period]
        raw = await self._call("acquire", lambda: self._acquire(keys, args))
        values = [int(v) for v in raw]
        outcomes = [
            Outcome(values[i], values[i + 1], values[i + 2], values[i + 3])
            for i in range(3, len(values), 4)
        ]
        return Decision(values[0] == 1, values[1], outcomes, values[2])

    async def settle(
        self,
        adjustments: Sequence[tuple[Check, Outcome, int]],
        slot: Slot | None,
        token: str,
        alerts: Sequence[float] = (),
    ) -> list[int]:
        if not adjustments and slot is None:
            return []
        keys = [c.key for c, _, _ in adjustments]
        args: list[int | float | str] = [self._code, len(adjustments), token, 0, len(alerts)]
        args += alerts
        if slot is not None:
            keys.append(slot.key)
            args[3] = 1
        for check, outcome, actual in adjustments:
            args += [
                check.window * 1000,
                outcome.charged_window,
                check.cost,
                actual,
                check.period,
                check.limit,
            ]
        crossed = await self._call("settle", lambda: self._settle(keys, args))
        return [int(value) for value in crossed]

    async def renew(self, slot: Slot, token: str) -> None:
        lease = max(1, int(slot.lease * 1000))
        await self._call("renew", lambda: self._renew([slot.key], [self._code, lease, token]))

    async def ping(self) -> None:
        await self._call("ping", lambda: self._client.ping())

    @property
    def client(self) -> Any:
        """The ``redis.asyncio`` client, shared with every middleware on the same URL."""
        return self._client

    async def aclose(self) -> None:
        await self._lease.aclose()
