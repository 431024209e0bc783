"""Recording one claimed request's response into the store, as it is sent.

The :class:`Recorder` moves through the states drawn in :mod:`._claim`; forwarding the
response to the client is :mod:`._forwarding`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import time
from typing import Final

from .._asgi import EVENT_STREAM, RawHeaders, media_type
from .._paths import route_template
from ..context import Scope, annotate
from ..exceptions import StoreUnavailable
from . import _records as records
from ._claim import (
    ANNOUNCED,
    BUFFERING,
    CLAIMED,
    DEFERRED,
    DEGRADED,
    DROPPED,
    RECORDED,
    RECORDING,
    STORED,
    STREAMING,
    TRANSITIONS,
    Claim,
)
from ._options import NEVER_STORED_HEADERS, NEVER_STORED_PREFIX, IdempotencyOptions
from ._recovery import LOG_GRACE, Pending, keep_alive, logger, write_behind

__all__ = ["FIRST_PROGRESS", "Recorder"]

# A stream's lease says how far it is at these moments after its first chunk: 0.25 s, then
# doubling gaps (0.75, 1.75, 3.75 s...) up to one per heartbeat. A retry's Retry-After then
# rests on a pace measured early, and a long stream costs a handful of writes, a short one none.
FIRST_PROGRESS: Final = 0.25


class Recorder(Claim):
    """Writes one claimed request's response into the store, as it is sent.

    A ``text/event-stream`` body goes chunk by chunk into the chunk log (followers read it
    live), and is also kept in memory up to ``max_record_bytes``, to be written behind if the
    store fails mid-stream; any other body is kept in memory up to ``max_record_bytes`` and
    stored with the record when the response ends.
    """

    __slots__ = (
        "_canonical",
        "base",
        "copy",
        "count",
        "due",
        "fingerprint",
        "gap",
        "headers",
        "parts",
        "root_path",
        "route",
        "size",
        "started",
        "status",
        "token",
    )

    def __init__(
        self,
        config: IdempotencyOptions,
        scope: Scope,
        key: str,
        token: str,
        fingerprint: str,
        lease: bytes,
        canonical: Callable[[], str],
        *,
        started: float | None = None,
    ) -> None:
        Claim.__init__(self, config, scope, key, lease, f"{key}:{token}")  # records.log_key
        self.started = time() if started is None else started  # when the request started
        self.root_path: str = scope.get("root_path", "")
        self.token = token
        self.fingerprint = fingerprint
        self._canonical = canonical
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.route: str | None = None
        self.parts: list[bytes] = []
        self.copy: list[bytes] | None = []  # a stream's chunks, while they fit
        self.size = 0
        self.count = 0  # chunks appended to the log
        self.base = b""  # the streaming lease, without progress
        self.due = 0.0  # when the lease next says how far the stream is (time())
        self.gap = FIRST_PROGRESS

    # -- the response, as it is sent ---------------------------------------------------------

    def start(self, status: int, raw: RawHeaders) -> None:
        """The response's head: a buffered body or a stream, or not recordable."""
        self.status = status
        # one pass over the headers: the first Content-Type says whether this is a stream
        # (is_event_stream), and stored_header() picks what the record keeps
        content_type: bytes | None = None
        kept = []
        for name, value in raw:
            lower = name.lower()
            if lower == b"content-type" and content_type is None:
                content_type = value
            if lower not in NEVER_STORED_HEADERS and not lower.startswith(NEVER_STORED_PREFIX):
                kept.append((bytes(name), bytes(value)))
        self.stream = stream = media_type(content_type) == EVENT_STREAM
        if status in self.config.unstored_statuses:
            self.drop("status")
            return
        self.headers = kept
        # the router has run by now: a replay reports the route the response came from
        self.route = route_template(self.scope, self.root_path)
        if self.state is CLAIMED:  # CLAIMED may move to either
            self.state = STREAMING if stream else BUFFERING

    def keep(self, body: bytes) -> None:
        """Keep a part of a buffered body in memory (drop the record when it grows too large)."""
        self.size += len(body)
        if self.size > self.config.max_record_bytes:
            self.drop("too_large")
        else:
            self.parts.append(bytes(body))

    async def chunk(self, chunk: bytes) -> None:
        """Write one chunk of a stream to its log (announcing the stream first)."""
        if self.state is STREAMING:
            await self.announce()
        if self.copy is not None:
            self.size += len(chunk)
            if self.size > self.config.max_record_bytes:
                self.copy = None
            else:
                self.copy.append(chunk)
        if self.state is DEGRADED:
            if self.copy is None:
                logger.warning("idempotency: the stream of %s is too large to keep", self.key)
                self.drop("store_error")
            return
        if self.state not in RECORDING:
            return
        try:
            await self.config.record_store.append(self.log, chunk, self.config.ttl + LOG_GRACE)
        except StoreUnavailable as exc:
            self._fault("append", exc)
            return
        self.count += 1
        if self.state is ANNOUNCED:
            now = time()
            if now >= self.due:
                # the pace so far, for a retry's Retry-After (also renews the lease)
                self.gap = min(self.gap * 2, self.config.heartbeat)
                self.due = now + self.gap
                await self._rewrite(records.progressed(self.base, self.count, now))

    async def announce(self) -> None:
        """Tell followers a stream is under way, and its head: after the first chunk went out,
        so the store's round trip never delays the first token."""
        self._to(ANNOUNCED)
        now = time()
        self.base = records.streaming_lease(
            self.token,
            self.fingerprint,
            self.status,
            self.headers,
            self.route,
            started=self.started,
            first=now,
        )
        self.due = now + FIRST_PROGRESS
        await self._rewrite(self.base)

    async def complete(self) -> None:
        """The response ended: store the record before the client sees the end of the body,
        so that a retry sent the moment the response ended finds it."""
        if STORED not in TRANSITIONS[self.state]:  # before the write, not after it
            if self.state is DEGRADED:
                self._defer(self._canonical())
                return
            self._check(STORED)
        canonical = self._canonical()
        stream = self.stream
        value = records.completed(
            self.token,
            self.fingerprint,
            canonical,
            self.status,
            self.headers,
            b"" if stream else b"".join(self.parts),
            self.count if stream else None,
            self.route,
        )
        self.pending = value
        config = self.config
        try:
            won = await config.record_store.replace(self.key, self.lease, value, config.ttl)
        except StoreUnavailable as exc:
            self._fault("replace", exc, final=True)
            # the chunk log is exact (every append landed): only the record is missing
            self._defer(canonical, exact_log=True)
            return
        if won:
            self.lease = value
            self.state = STORED  # checked above
            annotate(self.scope, RECORDED, "stored")
        elif self.faults:
            # a value of ours may have landed late, or the lease expired unrenewed
            self._defer(canonical, exact_log=True)
        else:
            self._lost()

    # -- outcomes ----------------------------------------------------------------------------

    def drop(self, reason: str) -> None:
        """Stop recording (said once, in the ``recorded`` annotation); the key is released when
        the app ends. A record already settled, or already dropped, stays as it is."""
        if self.state in RECORDING:
            self._to(DROPPED)
            self.parts = []
            self.copy = None
            annotate(self.scope, RECORDED, reason)

    def _fault(self, operation: str, exc: StoreUnavailable, *, final: bool = False) -> None:
        """The store failed while recording. The response already promised idempotency (its
        head went out with ``Idempotency-Retention``), so the record is kept in memory and
        written once the store answers again; a stream too large to keep is not stored,
        unless only its final write failed (its chunk log is then complete in the store)."""
        keep = final or not self.stream or self.copy is not None
        if not self.faults:
            logger.warning(
                "idempotency: store %s failed while recording %s, %s: %s",
                operation,
                self.key,
                "the record is written once the store answers again"
                if keep
                else "the stream is too large to keep, it is not stored",
                exc,
            )
        self.faults += 1
        if final:
            return
        if keep:
            self._degrade()
        else:
            self.drop("store_error")

    def _degrade(self) -> None:
        if self.state is DEGRADED or self.state not in RECORDING:
            return
        if self.stream and self.copy is None:
            self.drop("store_error")
        else:
            self._to(DEGRADED)

    def _lost(self) -> None:
        logger.warning(
            "idempotency: the claim on %s expired while the request ran (lease_ttl %.0f s); "
            "the response is not stored",
            self.key,
            self.config.lease_ttl,
        )
        self.drop("lease_lost")

    def _defer(self, canonical: str, *, exact_log: bool = False) -> None:
        """Hand the record to a write-behind task; the key is kept, never released."""
        if self.state not in RECORDING:
            return
        config = self.config
        pending = Pending(
            config.record_store,
            self.key,
            self.token,
            self.fingerprint,
            canonical,
            self.status,
            self.headers,
            config.ttl,
            route=self.route,
        )
        if not self.stream:
            pending.body = b"".join(self.parts)
        elif exact_log:
            pending.count = self.count
        else:
            pending.rewrite = self.copy
        self._to(DEFERRED)
        annotate(self.scope, RECORDED, "deferred")
        keep_alive(asyncio.ensure_future(write_behind(pending, config.ttl)))
