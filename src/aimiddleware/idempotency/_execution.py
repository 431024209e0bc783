"""One claimed request: run the app, forward its response, record it into the store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Final

from .._asgi import ASGIApp, Message, Receive, Scope, Send, annotate, is_event_stream
from .._paths import route_template
from ..exceptions import StoreUnavailable
from . import _records as records
from ._heartbeat import Heartbeats
from ._options import Options, stored_header
from ._recovery import LOG_GRACE, Pending, write_behind

__all__ = ["Execution", "keep_alive", "logger"]

logger = logging.getLogger("aimiddleware.idempotency")

RECORDED: Final = "aimiddleware.idempotency.recorded"

_BACKGROUND: set[asyncio.Task[None]] = set()


def _retrieve(task: asyncio.Task[None]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # the client is gone, so nobody else will see it; the claim was already released
        logger.warning("idempotency: the app failed after its client left: %r", task.exception())


def keep_alive(task: asyncio.Task[None]) -> None:
    """Hold a strong reference to a detached task until it finishes, and consume its outcome."""
    _BACKGROUND.add(task)
    task.add_done_callback(_retrieve)


class Execution:
    """The per-request recorder of a request that won its claim.

    ``send`` forwards each message to the client first and records it afterwards, so the
    first byte is never delayed by the store. A ``text/event-stream`` body goes chunk by chunk
    into the execution's chunk log (followers read it live); any other body is kept in memory
    up to ``max_body_bytes`` and stored with the record when the response completes.
    """

    __slots__ = (
        "__weakref__",
        "_finished",
        "_heartbeats",
        "_send",
        "announced",
        "canonical",
        "complete",
        "copy",
        "count",
        "degraded",
        "done",
        "extra_headers",
        "faulted",
        "fingerprint",
        "forwarding",
        "headers",
        "key",
        "lease",
        "log",
        "opts",
        "parts",
        "pending",
        "recording",
        "root_path",
        "route",
        "scope",
        "size",
        "status",
        "stored",
        "stream",
        "token",
    )

    def __init__(
        self,
        opts: Options,
        scope: Scope,
        send: Send,
        key: str,
        token: str,
        fingerprint: str,
        lease: bytes,
        extra_headers: Iterable[tuple[bytes, bytes]],
        canonical: Callable[[], str],
        heartbeats: Heartbeats,
    ) -> None:
        self.opts = opts
        self._heartbeats = heartbeats
        self.scope = scope
        self.root_path: str = scope.get("root_path", "")
        self.route: str | None = None
        self._send = send
        self.key = key
        self.token = token
        self.fingerprint = fingerprint
        self.canonical = canonical
        self.lease = lease
        self.log = records.log_key(key, token)
        self.extra_headers = extra_headers
        self.forwarding = True
        self.recording = True
        self.complete = False
        self.done = False
        self.stored = False
        self.announced = False
        self.pending: bytes | None = None
        self.stream = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []
        self.copy: list[bytes] | None = []
        self.degraded = False  # the store failed: record in memory, write once it answers
        self.size = 0
        self.count = 0
        self.faulted = False  # one log line per fault: later failures of the same outage are quiet
        self._finished: asyncio.Event | None = None

    # -- the app's side ----------------------------------------------------------------------

    async def run(self, app: ASGIApp, receive: Receive) -> None:
        """Run the app to its end and then store or release the record."""
        self._heartbeats.add(self)  # renewed every opts.heartbeat seconds until done
        try:
            await app(self.scope, receive, self.send)
        except asyncio.CancelledError:
            self._stop()
            if self.stored:  # the response was complete and is kept
                raise
            # a cancelled task may not await again under anyio's level cancellation: release
            # from a task of its own
            keep_alive(asyncio.ensure_future(self._release("cancelled")))
            raise
        except BaseException:
            self._stop()
            if not self.stored:
                await self._release("app_error")
            raise
        self._stop()
        await self._finish()

    def hiding_disconnect(self, receive: Receive) -> Receive:
        """A ``receive`` that keeps a client disconnect from the app until the response ends.

        The app then finishes the generation; the recorder stops forwarding and keeps recording.
        """

        async def _receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" and not self.complete:
                self.detach()
                if self._finished is None:
                    self._finished = asyncio.Event()
                await self._finished.wait()
            return message

        return _receive

    def detach(self) -> None:
        """The client is gone: stop forwarding, keep recording."""
        if self.forwarding:
            self.forwarding = False
            annotate(self.scope, "aimiddleware.idempotency.client_gone", True)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            body = message.get("body", b"")
            if message.get("more_body", False):
                await self._forward(message)
                if self.recording and body:
                    if self.stream:
                        await self._chunk(bytes(body))
                    else:
                        self._part(body)
                elif self.recording and self.stream and not self.announced:
                    await self._announce()
                return
            if body and self.stream:
                # the last event goes out now; only the end of the body waits for the record
                await self.send({"type": "http.response.body", "body": body, "more_body": True})
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            elif self.recording and body:
                self._part(body)
            if self.recording:
                # stored before the client sees the end of the body: a retry sent the moment
                # the response ended finds the record. Only then is the response complete for
                # hiding_disconnect: a server reports a disconnect once the body has ended,
                # and an app that reacts to it (Starlette's StreamingResponse cancels itself)
                # must not cut the store write short.
                await self._store()
            self.complete = True
            await self._forward(message)
            if self._finished is not None:
                self._finished.set()
            return
        if kind == "http.response.start":
            await self._start(message)
            return
        # trailers, pathsend, ...: a response we cannot replay faithfully
        self._drop("unsupported")
        await self._forward(message)

    def _part(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.opts.max_body_bytes:
            self._drop("too_large")
        else:
            self.parts.append(bytes(body))

    async def _chunk(self, chunk: bytes) -> None:
        if not self.announced:
            await self._announce()
        # kept in memory as well (up to max_body_bytes): if the store fails mid-stream, the
        # record is written from this copy once it answers again
        if self.copy is not None:
            self.size += len(chunk)
            if self.size > self.opts.max_body_bytes:
                self.copy = None
            else:
                self.copy.append(chunk)
        if self.degraded:
            return
        try:
            await self.opts.store.append(self.log, chunk, self.opts.ttl + LOG_GRACE)
        except StoreUnavailable as exc:
            self._fault("append", exc)
            return
        self.count += 1

    async def _start(self, message: Message) -> None:
        status = int(message["status"])
        raw = list(message.get("headers", ()))
        self.status = status
        self.stream = is_event_stream(raw)
        if status in self.opts.no_store_statuses:
            self._drop("status")
        else:
            self.headers = [(bytes(n), bytes(v)) for n, v in raw if stored_header(n)]
            # the router has run by now: a replay reports the route the response came from
            self.route = route_template(self.scope, self.root_path)
        await self._forward({**message, "headers": [*raw, *self.extra_headers]})

    async def _announce(self) -> None:
        """Tell followers a stream is under way, and its head: after the first chunk went out,
        so the store's round trip never delays the first token."""
        self.announced = True
        new = records.streaming_lease(
            self.token, self.fingerprint, self.status, self.headers, self.route
        )
        self.pending = new
        try:
            won = await self.opts.store.replace(self.key, self.lease, new, self.opts.lease_ttl)
        except StoreUnavailable as exc:
            self._fault("replace", exc)
            return
        if won:
            self.lease = new
        elif self.faulted:
            # after a fault the lease may have expired unrenewed: settled once the store answers
            self._degrade()
        else:
            self._lost()

    async def _forward(self, message: Message) -> None:
        if not self.forwarding:
            return
        if self.opts.on_disconnect == "abort":
            await self._send(message)
            return
        try:
            await self._send(message)
        except OSError:
            # the server reports a gone client (ASGI spec 2.4): finish and record anyway
            self.detach()

    # -- outcome -----------------------------------------------------------------------------

    def _drop(self, reason: str) -> None:
        if self.recording:
            self.recording = False
            self.parts = []
            self.copy = None
            annotate(self.scope, RECORDED, reason)

    def _fault(self, operation: str, exc: StoreUnavailable, *, final: bool = False) -> None:
        """The store failed while recording. The response already promised idempotency (its
        head went out with ``Idempotency-Retention``), so the record is kept in memory and
        written once the store answers again; a stream too large to keep is not stored,
        unless only its final write failed (its chunk log is then complete in the store)."""
        keep = final or not self.stream or self.copy is not None
        if not self.faulted:
            self.faulted = True
            logger.warning(
                "idempotency: store %s failed while recording %s, %s: %s",
                operation,
                self.key,
                "the record is written once the store answers again"
                if keep
                else "the stream is too large to keep, it is not stored",
                exc,
            )
        if final:
            return
        if keep:
            self._degrade()
        else:
            self._drop("store_error")

    def _degrade(self) -> None:
        if self.stream and self.copy is None:
            self._drop("store_error")
        else:
            self.degraded = True

    def _lost(self) -> None:
        logger.warning(
            "idempotency: the claim on %s expired while the request ran (lease_ttl %.0f s); "
            "the response is not stored",
            self.key,
            self.opts.lease_ttl,
        )
        self._drop("lease_lost")

    async def _finish(self) -> None:
        if self.stored:
            return
        if not self.recording:
            await self._release(None)  # _drop said why
        else:
            await self._release("incomplete")

    async def _store(self) -> None:
        canonical = self.canonical()
        if self.degraded:
            self._defer(canonical)
            return
        if self.stream:
            value = records.completed(
                self.token,
                self.fingerprint,
                canonical,
                self.status,
                self.headers,
                chunks=self.count,
                route=self.route,
            )
        else:
            body = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
            value = records.completed(
                self.token,
                self.fingerprint,
                canonical,
                self.status,
                self.headers,
                body=body,
                route=self.route,
            )
        self.pending = value
        try:
            won = await self.opts.store.replace(self.key, self.lease, value, self.opts.ttl)
        except StoreUnavailable as exc:
            self._fault("replace", exc, final=True)
            # the chunk log is exact (every append landed): only the record is missing
            self._defer(canonical, exact_log=True)
            return
        if won:
            self.lease = value
            self.stored = True
            annotate(self.scope, RECORDED, "stored")
        elif self.faulted:
            # a value of ours may have landed late, or the lease expired unrenewed
            self._defer(canonical, exact_log=True)
        else:
            self._lost()

    def _defer(self, canonical: str, *, exact_log: bool = False) -> None:
        """Hand the record to a write-behind task; the key is kept, never released."""
        if not self.recording:
            return
        pending = Pending(
            self.opts.store,
            self.key,
            self.token,
            self.fingerprint,
            canonical,
            self.status,
            self.headers,
            self.opts.ttl,
            route=self.route,
        )
        if not self.stream:
            pending.body = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        elif exact_log:
            pending.count = self.count
        else:
            pending.rewrite = self.copy
        self.stored = True
        annotate(self.scope, RECORDED, "deferred")
        keep_alive(asyncio.ensure_future(write_behind(pending, self.opts.ttl)))

    async def _release(self, reason: str | None) -> None:
        """Give the key back: a retry runs the request again. Never stores a partial response."""
        if reason is not None:
            annotate(self.scope, RECORDED, reason)
        store = self.opts.store
        try:
            released = await store.release(self.key, self.lease)
            if not released and self.pending is not None and self.pending != self.lease:
                # cancelled while a replace was in flight: the store may hold the new value
                await store.release(self.key, self.pending)
            if self.announced:  # a chunk may have landed even if its append was cut short
                await store.delete(self.log)
        except StoreUnavailable as exc:
            if self.faulted:
                return
            self.faulted = True
            logger.warning(
                "idempotency: store release failed, the key stays claimed until its lease "
                "expires (%.0f s): %s",
                self.opts.lease_ttl,
                exc,
            )

    # -- lease heartbeat ---------------------------------------------------------------------

    def beat(self) -> None:
        """Renew the lease (called by the middleware's heartbeats while the app runs)."""
        keep_alive(asyncio.ensure_future(self._renew()))

    async def _renew(self) -> None:
        expected = self.lease
        try:
            won = await self.opts.store.renew(self.key, expected, self.opts.lease_ttl)
        except StoreUnavailable as exc:
            if not self.faulted:
                self.faulted = True
                logger.warning("idempotency: lease renewal failed, will retry: %s", exc)
            return
        # a replace that ran meanwhile changed the value: not a lost claim
        if not won and not self.done and self.lease == expected:
            if self.faulted:
                # a write of ours that timed out may have landed since: settled at the end
                self._degrade()
            else:
                self._lost()

    def _stop(self) -> None:
        self.done = True
