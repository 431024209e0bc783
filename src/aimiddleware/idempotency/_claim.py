"""The claim of one request on its key: its record's states, the lease's renewal and release.

A record is in one :class:`State` at a time and moves only along :data:`TRANSITIONS`
(an illegal move raises :class:`InvalidTransition`: a bug, never a client's doing)::

    CLAIMED --start--> BUFFERING (a body kept in memory) | STREAMING (an event stream)
    STREAMING --first chunk--> ANNOUNCED (followers see the stream, chunks go to its log)
    CLAIMED | BUFFERING | STREAMING | ANNOUNCED --store fault--> DEGRADED (kept in memory)
    BUFFERING | STREAMING | ANNOUNCED --end of the response--> STORED
    any of those or DEGRADED --store fault at the end--> DEFERRED (written behind)
    any live state --not recordable--> DROPPED (status, size, trailers, lease lost)
    any live state or DROPPED --the app ends without a record--> RELEASED (the key is freed)

STORED, DEFERRED and RELEASED are final: the lease is no longer renewed.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Coroutine
from typing import Any, Final

from ..context import Scope, annotate
from ..exceptions import StoreUnavailable
from ._options import IdempotencyOptions
from ._recovery import keep_alive, logger

__all__ = [
    "ANNOUNCED",
    "BUFFERING",
    "CLAIMED",
    "DEFERRED",
    "DEGRADED",
    "DROPPED",
    "FINAL",
    "RECORDED",
    "RECORDING",
    "RELEASED",
    "STORED",
    "STREAMING",
    "TRANSITIONS",
    "Claim",
    "InvalidTransition",
    "State",
]

RECORDED: Final = "aimiddleware.idempotency.recorded"


class State(enum.Enum):
    """Where the record of one claimed request stands."""

    CLAIMED = "claimed"  # the lease is ours, the response has not started
    BUFFERING = "buffering"  # a response body is kept in memory until it ends
    STREAMING = "streaming"  # an event stream started, no chunk written yet
    ANNOUNCED = "announced"  # the stream's head is in the store, its chunks go to the log
    DEGRADED = "degraded"  # the store failed: recorded in memory, written once it answers
    DROPPED = "dropped"  # not recordable: the key is released when the app ends
    STORED = "stored"  # the record is in the store
    DEFERRED = "deferred"  # the record is handed to a write-behind task
    RELEASED = "released"  # the key was given back: a retry runs the request again

    # members are singletons: identity hashing is C-level, Enum's own __hash__ is a Python call
    # (and states are looked up in sets and TRANSITIONS several times per request)
    __hash__ = object.__hash__

    @property
    def recording(self) -> bool:
        """The response is still being recorded."""
        return self in RECORDING

    @property
    def final(self) -> bool:
        """Nothing more happens to the record (and the lease is not renewed)."""
        return self in FINAL


# The members as module constants, which the hot paths use: reading one through the class
# goes through EnumType's Python-level attribute hook, on every use.
CLAIMED, BUFFERING, STREAMING, ANNOUNCED, DEGRADED, DROPPED, STORED, DEFERRED, RELEASED = State
RECORDING: Final = frozenset({CLAIMED, BUFFERING, STREAMING, ANNOUNCED, DEGRADED})
FINAL: Final = frozenset({STORED, DEFERRED, RELEASED})
_ENDS: Final = frozenset({STORED, DEFERRED, DEGRADED, DROPPED})
TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    CLAIMED: frozenset({BUFFERING, STREAMING, DEGRADED, DROPPED, RELEASED}),
    BUFFERING: _ENDS | {RELEASED},
    STREAMING: _ENDS | {ANNOUNCED, RELEASED},
    ANNOUNCED: _ENDS | {RELEASED},
    DEGRADED: frozenset({DEFERRED, DROPPED, RELEASED}),
    DROPPED: frozenset({RELEASED}),
    STORED: frozenset(),
    DEFERRED: frozenset(),
    RELEASED: frozenset(),
}


class InvalidTransition(RuntimeError):  # noqa: N818 (names the event, like StopIteration)
    """A move the state machine does not have: a bug in the recorder."""


class Claim:
    """The key a request won, while its response is recorded: the record's state, the lease,
    its renewal by the heartbeats and its release. :class:`Recorder` records the response."""

    __slots__ = (
        "__weakref__",
        "config",
        "faults",
        "key",
        "lease",
        "log",
        "pending",
        "scope",
        "state",
        "stream",
    )

    def __init__(
        self, config: IdempotencyOptions, scope: Scope, key: str, lease: bytes, log: str
    ) -> None:
        self.config = config
        self.scope = scope
        self.key = key
        self.lease = lease
        self.log = log  # the chunk log of a stream
        self.state = CLAIMED
        self.stream = False
        self.pending: bytes | None = None  # the last value written in place of the lease
        self.faults = 0  # one log line per outage: later failures of it are quiet

    def _check(self, state: State) -> None:
        """Raise unless the record may move to ``state`` from where it is."""
        if state not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"{self.state.name} -> {state.name}")

    def _to(self, state: State) -> None:
        self._check(state)
        self.state = state

    @property
    def done(self) -> bool:
        """The record is settled: the heartbeats stop renewing the lease."""
        return self.state in FINAL

    def _degrade(self) -> None:
        """The store failed: go on recording in memory (or drop what cannot be kept)."""
        raise NotImplementedError

    def _lost(self) -> None:
        """The lease expired and is gone: the response is not stored."""
        raise NotImplementedError

    def _fault(self, operation: str, exc: StoreUnavailable, *, final: bool = False) -> None:
        """The store failed while recording."""
        raise NotImplementedError

    async def _rewrite(self, new: bytes) -> None:
        """Replace the lease with ``new`` (a streaming lease, or one with the stream's progress)."""
        self.pending = new
        try:
            won = await self.config.record_store.replace(
                self.key, self.lease, new, self.config.lease_ttl
            )
        except StoreUnavailable as exc:
            self._fault("replace", exc)
            return
        if won:
            self.lease = new
        elif self.faults:
            # after a fault the lease may have expired unrenewed: settled once the store answers
            self._degrade()
        else:
            self._lost()

    def release(self, reason: str | None) -> Coroutine[Any, Any, None]:
        """Give the key back (``RELEASED`` at once; the returned coroutine tells the store):
        a retry runs the request again. A partial response is never stored."""
        self._to(RELEASED)
        if reason is not None:
            annotate(self.scope, RECORDED, reason)
        return self._give_back()

    async def _give_back(self) -> None:
        store = self.config.record_store
        try:
            released = await store.release(self.key, self.lease)
            if not released and self.pending is not None and self.pending != self.lease:
                # cancelled while a replace was in flight: the store may hold the new value
                await store.release(self.key, self.pending)
            if self.stream and self.pending is not None:
                # a chunk may have landed even if its append was cut short
                await store.delete(self.log)
        except StoreUnavailable as exc:
            self.faults += 1
            if self.faults > 1:
                return
            logger.warning(
                "idempotency: store release failed, the key stays claimed until its lease "
                "expires (%.0f s): %s",
                self.config.lease_ttl,
                exc,
            )

    def beat(self) -> None:
        """Renew the lease (called by the middleware's heartbeats while the app runs)."""
        keep_alive(asyncio.ensure_future(self._renew()))

    async def _renew(self) -> None:
        expected = self.lease
        try:
            won = await self.config.record_store.renew(self.key, expected, self.config.lease_ttl)
        except StoreUnavailable as exc:
            if not self.faults:
                logger.warning("idempotency: lease renewal failed, will retry: %s", exc)
            self.faults += 1
            return
        # a replace that ran meanwhile changed the value: not a lost claim
        if not won and self.state in RECORDING and self.lease == expected:
            if self.pending not in (None, expected) and not self.faults:
                # a replace of ours is still in flight (a stream's progress, its completion):
                # it may have changed the value already, and its answer settles the claim
                return
            if self.faults:
                # a write of ours that timed out may have landed since: settled at the end
                self._degrade()
            else:
                self._lost()
