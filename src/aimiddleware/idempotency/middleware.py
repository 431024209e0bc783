"""IdempotencyMiddleware: the Idempotency-Key header, exactly once across workers."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import Collection, Coroutine, Iterable
from typing import Any, Final

from .._asgi import (
    ASGIApp,
    ClientDisconnected,
    Message,
    Receive,
    RequestBodyTooLarge,
    Scope,
    Send,
    annotate,
    get_headers,
    read_body,
    route_path,
)
from .._workers import warn_if_several_workers
from ..context import set_route_template_override
from ..exceptions import StoreUnavailable
from ..principal import get_principal
from ..stores import Store
from . import _records as records
from ._execution import Execution, keep_alive, logger
from ._heartbeat import Heartbeats
from ._keys import Hasher, InvalidKeyError, asks_for_stream, parse_key
from ._options import DEFAULT_TYPE_BASE, PrincipalResolver, build_options
from ._problems import send_problem
from ._replay import IncompleteRecord, follow, load_chunks, replay

__all__ = ["IdempotencyMiddleware"]

OUTCOME: Final = "aimiddleware.idempotency.outcome"
RETENTION_HEADER: Final = b"idempotency-retention"
NOT_APPLIED: Final = (b"idempotency-applied", b"false")
# Lease tokens only need to be unique across executions: a random part per process and a
# counter are cheaper than fresh randomness per request. Forked workers (a preloading
# server) draw their own random part, or two of them could hand out the same token.
_PROCESS = secrets.token_hex(8)
_SEQUENCE = itertools.count()


def _new_process() -> None:
    global _PROCESS, _SEQUENCE
    _PROCESS = secrets.token_hex(8)
    _SEQUENCE = itertools.count()


os.register_at_fork(after_in_child=_new_process)


async def _drive(run: Coroutine[Any, Any, None], waiter: asyncio.Future[None]) -> None:
    """Run the execution and hand its outcome straight to the waiting request.

    Settling the future here, rather than from a done-callback of the task, saves the request
    one trip through the event loop.
    """
    try:
        await run
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        if waiter.done():  # the request was cancelled meanwhile: keep_alive reports it
            raise
        waiter.set_exception(exc)
    else:
        if not waiter.done():
            waiter.set_result(None)


class IdempotencyMiddleware:
    """Run each ``(principal, Idempotency-Key)`` once; answer retries with the stored response.

    Follows draft-ietf-httpapi-idempotency-key-header-07 with Stripe's behaviour: the first
    request claims the key atomically (with a lease renewed while it runs), its response is
    stored (a ``text/event-stream`` one chunk by chunk, as it is sent), and a retry with the
    same key and the same request gets the same status, headers and bytes back with
    ``Idempotent-Replayed: true``. The same key with a different request is a 422, a retry
    while the first is still running a 409 (or, with ``follow_streams``, the live stream).

    Records are scoped by the principal the auth middleware attached
    (:func:`aimiddleware.get_principal`), else by ``principal_resolver(scope)``. A request
    without either is passed through untouched unless ``anonymous="shared"``: one tenant can
    never be answered with another's stored response. See ``docs/idempotency.md``.

    >>> from starlette.applications import Starlette
    >>> app = IdempotencyMiddleware(
    ...     Starlette(),
    ...     store="memory://",
    ...     principal_resolver=lambda scope: "single-tenant",
    ... )
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: Store | str | None = None,
        methods: Iterable[str] = ("POST", "PATCH"),
        paths: Iterable[str] | None = None,
        require_key: bool = False,
        principal_resolver: PrincipalResolver | None = None,
        anonymous: str = "pass",
        secret: str | bytes | None = None,
        ttl: float = 86400.0,
        lease_ttl: float = 30.0,
        on_disconnect: str = "complete",
        follow_streams: bool = False,
        poll_interval: float = 0.05,
        no_store_statuses: Collection[int] | None = None,
        on_store_error: str = "closed",
        retry_after: int = 1,
        max_body_bytes: int = 8 * 1024 * 1024,
        max_request_bytes: int = 8 * 1024 * 1024,
        problem_type_base: str = DEFAULT_TYPE_BASE,
    ) -> None:
        self.app = app
        self._opts = build_options(
            store=store,
            methods=methods,
            paths=paths,
            require_key=require_key,
            principal_resolver=principal_resolver,
            anonymous=anonymous,
            secret=secret,
            ttl=ttl,
            lease_ttl=lease_ttl,
            on_disconnect=on_disconnect,
            follow_streams=follow_streams,
            poll_interval=poll_interval,
            no_store_statuses=no_store_statuses,
            on_store_error=on_store_error,
            retry_after=retry_after,
            max_body_bytes=max_body_bytes,
            max_request_bytes=max_request_bytes,
            problem_type_base=problem_type_base,
        )
        self._hasher = Hasher(self._opts.secret)
        # one timer renews the leases of all running executions (not one timer per request)
        self._heartbeats = Heartbeats(self._opts.heartbeat)
        self._extra: Final = ((RETENTION_HEADER, str(round(self._opts.ttl)).encode("ascii")),)
        self._warned_anonymous = False
        # a store built here from a URL (or the default) is ours to close at shutdown
        self._owns_store = not isinstance(store, Store)
        # a per-process store behind several workers is said once, at start-up
        self._check_workers = not self._opts.store.shared

    @property
    def store(self) -> Store:
        """The store records live in.

        A store the middleware built from a URL is closed at lifespan shutdown; a ``Store``
        passed in stays the caller's to close (``await store.aclose()``).
        """
        return self._opts.store

    def __repr__(self) -> str:
        o = self._opts
        return (
            f"IdempotencyMiddleware(store={o.store!r}, methods={sorted(o.methods)}, "
            f"ttl={o.ttl:g}, lease_ttl={o.lease_ttl:g}, on_disconnect={o.on_disconnect!r}, "
            f"on_store_error={o.on_store_error!r}, secret={'***' if o.secret else None})"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        opts = self._opts
        if self._check_workers:
            self._check_workers = False
            warn_if_several_workers("IdempotencyMiddleware", "idempotency records (memory store)")
        if scope["type"] == "lifespan" and self._owns_store:
            await self.app(scope, receive, self._closing_store(send))
            return
        if (
            scope["type"] != "http"
            or scope["method"] not in opts.methods
            or (opts.paths is not None and not opts.paths.matches(route_path(scope)))
        ):
            await self.app(scope, receive, send)
            return
        raw = get_headers(scope["headers"], b"idempotency-key")
        if not raw:
            if opts.require_key:
                annotate(scope, OUTCOME, "missing_key")
                await send_problem(scope, send, "idempotency-key-missing", opts.problem_type_base)
                return
            await self.app(scope, receive, send)
            return
        try:
            if len(raw) > 1:
                raise InvalidKeyError("send exactly one Idempotency-Key header")
            key = parse_key(raw[0])
        except InvalidKeyError as exc:
            annotate(scope, OUTCOME, "invalid_key")
            await send_problem(
                scope, send, "idempotency-key-invalid", opts.problem_type_base, detail=str(exc)
            )
            return
        tenant = self._tenant(scope)
        if tenant is None:
            annotate(scope, OUTCOME, "anonymous")
            await self.app(scope, receive, send)
            return
        try:
            body, receive = await read_body(scope, receive, limit=opts.max_request_bytes)
        except ClientDisconnected:
            return
        except RequestBodyTooLarge:
            annotate(scope, OUTCOME, "body_too_large")
            detail = f"The request body is larger than {opts.max_request_bytes} bytes."
            await send_problem(
                scope, send, "request-body-too-large", opts.problem_type_base, detail=detail
            )
            return
        fingerprint = self._hasher.fingerprint(scope, body)
        record_key = self._hasher.record_key(tenant, key)
        annotate(scope, "aimiddleware.idempotency.key_hash", record_key[5:21])
        token = f"{_PROCESS}{next(_SEQUENCE):016x}"
        lease = records.lease(token, fingerprint)
        try:
            existing = await opts.store.claim(record_key, lease, opts.lease_ttl)
        except StoreUnavailable as exc:
            await self._store_fault(scope, receive, send, exc)
            return
        if existing is None:
            annotate(scope, OUTCOME, "claimed")
            await self._execute(scope, receive, send, record_key, token, fingerprint, lease, body)
            return
        await self._answer_retry(scope, send, record_key, existing, fingerprint, body)

    def _closing_store(self, send: Send) -> Send:
        async def _send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                try:
                    await self._opts.store.aclose()
                except Exception as exc:  # shutting down: say it, do not fail the shutdown
                    logger.warning("idempotency: closing the store failed: %r", exc)
            await send(message)

        return _send

    # -- who -------------------------------------------------------------------------------

    def _tenant(self, scope: Scope) -> str | None:
        principal = get_principal(scope)
        if principal is not None:
            return "p:" + principal.id
        resolver = self._opts.principal_resolver
        if resolver is not None:
            resolved = resolver(scope)
            if resolved:
                return "r:" + resolved
        if self._opts.anonymous == "shared":
            return "anonymous"
        if not self._warned_anonymous:
            self._warned_anonymous = True
            logger.warning(
                "idempotency: a request with an Idempotency-Key has no principal; it runs "
                "without idempotency (mount an auth middleware, set principal_resolver, or "
                "anonymous='shared' for a single-tenant API)"
            )
        return None

    # -- the first request -----------------------------------------------------------------

    async def _execute(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        key: str,
        token: str,
        fingerprint: str,
        lease: bytes,
        body: bytes,
    ) -> None:
        opts = self._opts
        hasher = self._hasher
        execution = Execution(
            opts,
            scope,
            send,
            key,
            token,
            fingerprint,
            lease,
            self._extra,
            lambda: hasher.canonical_fingerprint(scope, body),
            self._heartbeats,
        )
        if opts.on_disconnect == "abort":
            await execution.run(self.app, receive)
            return
        if not asks_for_stream(scope, body):
            # Inline: a task costs a trip through the event loop on every request, and only a
            # stream gets cancelled from outside when its client leaves (the SSE middleware
            # does). The disconnect itself is still hidden from the app.
            await execution.run(self.app, execution.hiding_disconnect(receive))
            return
        # A stream runs in a task of its own: an outer cancellation (the client left, the SSE
        # middleware cancels us) stops only the forwarding, the generation runs on and is stored.
        # We wait on a plain future, not the task (awaiting a task would pass the cancel on).
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        task = loop.create_task(
            _drive(execution.run(self.app, execution.hiding_disconnect(receive)), waiter)
        )
        try:
            await waiter  # the app's exception, if any, goes on up from here
        except asyncio.CancelledError:
            if not task.done():
                execution.detach()
                keep_alive(task)
            raise

    # -- a retry ---------------------------------------------------------------------------

    async def _answer_retry(
        self,
        scope: Scope,
        send: Send,
        key: str,
        existing: bytes,
        fingerprint: str,
        body: bytes,
    ) -> None:
        opts = self._opts
        try:
            record = records.decode(existing)
        except ValueError:
            logger.warning("idempotency: the store holds a value that is not a record")
            await self._unavailable(scope, send, "corrupt_record")
            return
        if record.fingerprint != fingerprint and (
            # a lease knows only the bytes as sent: a retry that differs in JSON key order
            # or whitespace waits (409) until the record can be compared canonically
            not record.complete
            or record.canonical != self._hasher.canonical_fingerprint(scope, body)
        ):
            if not record.complete:
                await self._conflict(scope, send)
                return
            annotate(scope, OUTCOME, "mismatch")
            await send_problem(scope, send, "idempotency-key-reused", opts.problem_type_base)
            return
        if record.complete:
            chunks = None
            if record.streaming:
                try:
                    chunks = await load_chunks(opts.store, key, record)
                except (StoreUnavailable, IncompleteRecord) as exc:
                    # the record exists: running the app again would break exactly-once
                    logger.warning("idempotency: could not read a stored stream: %s", exc)
                    await self._unavailable(scope, send, "replay_failed")
                    return
            annotate(scope, OUTCOME, "replayed")
            if record.route is not None:
                set_route_template_override(scope, record.route)
            await replay(send, record, chunks, self._extra)
            return
        if record.kind == records.STREAMING and opts.follow_streams:
            annotate(scope, OUTCOME, "followed")
            if record.route is not None:
                set_route_template_override(scope, record.route)
            try:
                await follow(opts.store, key, record, send, self._extra, opts.poll_interval)
            except StoreUnavailable as exc:
                logger.warning("idempotency: following a stream failed: %s", exc)
                raise
            return
        await self._conflict(scope, send)

    async def _conflict(self, scope: Scope, send: Send) -> None:
        annotate(scope, OUTCOME, "conflict")
        await send_problem(
            scope,
            send,
            "idempotency-key-in-flight",
            self._opts.problem_type_base,
            retry_after=self._opts.retry_after,
        )

    # -- store faults ----------------------------------------------------------------------

    async def _store_fault(
        self, scope: Scope, receive: Receive, send: Send, exc: StoreUnavailable
    ) -> None:
        if self._opts.on_store_error == "closed":
            logger.warning("idempotency: store unavailable, answering 503 (fail-closed): %s", exc)
            await self._unavailable(scope, send, "fail_closed")
            return
        logger.warning(
            "idempotency: store unavailable, running the request without idempotency "
            "(fail-open): %s",
            exc,
        )
        annotate(scope, OUTCOME, "fail_open")

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), NOT_APPLIED]}
            await send(message)

        await self.app(scope, receive, _send)

    async def _unavailable(self, scope: Scope, send: Send, outcome: str) -> None:
        annotate(scope, OUTCOME, outcome)
        await send_problem(
            scope,
            send,
            "idempotency-store-unavailable",
            self._opts.problem_type_base,
            retry_after=self._opts.retry_after,
        )
