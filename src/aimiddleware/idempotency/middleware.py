"""IdempotencyMiddleware: the Idempotency-Key header, exactly once across workers."""

from __future__ import annotations

import itertools
import os
import secrets
from time import time
from typing import Any, Final

from .._asgi import close_on_shutdown
from .._config import build_options
from .._workers import warn_if_several_workers
from ..context import (
    ASGIApp,
    ClientDisconnected,
    Receive,
    RequestBodyTooLarge,
    Scope,
    Send,
    annotate,
    get_annotations,
    get_principal,
    read_body,
    route_path,
)
from ..exceptions import StoreUnavailable
from ..stores import Store
from . import _records as records
from ._answers import OUTCOME, answer_retry, run_without_idempotency
from ._execution import Execution
from ._heartbeat import Heartbeats
from ._keys import Hasher, InvalidKeyError, is_json, parse_key, request_head, wants_stream
from ._options import IdempotencyOptions
from ._problems import send_problem
from ._recording import Recorder
from ._recovery import logger

__all__ = ["IdempotencyMiddleware"]

RETENTION_HEADER: Final = b"idempotency-retention"
KEY_HASH: Final = "aimiddleware.idempotency.key_hash"
# the option's name before max_record_bytes (it clashed with the guard's request bound)
RENAMED: Final = {"max_body_bytes": "max_record_bytes"}
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


class IdempotencyMiddleware:
    """Run each ``(principal, Idempotency-Key)`` once; answer retries with the stored response.

    Follows draft-ietf-httpapi-idempotency-key-header-07 with Stripe's behaviour: the first
    request claims the key atomically (with a lease renewed while it runs), its response is
    stored (a ``text/event-stream`` one chunk by chunk, as it is sent), and a retry with the
    same key and the same request gets the same status, headers and bytes back with
    ``Idempotent-Replayed: true``. The same key with a different request is a 422, a retry
    while the first is still running a 409 (or, with ``follow_streams``, the live stream).

    Records are scoped by the principal the auth middleware attached
    (:func:`aimiddleware.context.get_principal`), else by ``principal_resolver(scope)``. A
    request without either is passed through untouched unless ``anonymous="shared"``: one
    tenant can never be answered with another's stored response. The options are those of
    :class:`IdempotencyOptions`, given as keywords or as the object (``config=``); see
    ``docs/idempotency.md``.

    >>> from starlette.applications import Starlette
    >>> app = IdempotencyMiddleware(
    ...     Starlette(),
    ...     store="memory://",
    ...     principal_resolver=lambda scope: "single-tenant",
    ... )
    """

    def __init__(
        self, app: ASGIApp, config: IdempotencyOptions | None = None, **options: Any
    ) -> None:
        self.app = app
        self.config = build_options(
            "IdempotencyMiddleware", IdempotencyOptions, config, options, renamed=RENAMED
        )
        config = self.config
        self._hasher = Hasher(config.secret_bytes)
        # one timer renews the leases of all running executions (not one timer per request)
        self._heartbeats = Heartbeats(config.heartbeat)
        self._extra: Final = ((RETENTION_HEADER, str(round(config.ttl)).encode("ascii")),)
        self._warned_anonymous = False
        # a store the options built from a URL (or the default) is ours to close at shutdown
        self._owns_store = not isinstance(config.store, Store)
        # a per-process store behind several workers is said once, at start-up
        self._check_workers = not config.record_store.shared

    @property
    def store(self) -> Store:
        """The store records live in.

        A store the middleware built from a URL is closed at lifespan shutdown; a ``Store``
        passed in stays the caller's to close (``await store.aclose()``).
        """
        return self.config.record_store

    def __repr__(self) -> str:
        c = self.config
        return (
            f"IdempotencyMiddleware(store={c.record_store!r}, methods={sorted(c.method_set)}, "
            f"ttl={c.ttl:g}, lease_ttl={c.lease_ttl:g}, on_disconnect={c.on_disconnect!r}, "
            f"on_store_error={c.on_store_error!r}, secret={'***' if c.secret else None})"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        config = self.config
        if self._check_workers:
            self._check_workers = False
            warn_if_several_workers("IdempotencyMiddleware", "idempotency records (memory store)")
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self._owns_store:
                send = close_on_shutdown(send, config.record_store.aclose, "idempotency", logger)
            await self.app(scope, receive, send)
            return
        if scope["method"] not in config.method_set or (
            config.path_set is not None and not config.path_set.matches(route_path(scope))
        ):
            await self.app(scope, receive, send)
            return
        # one pass over the request's headers for the three this middleware reads
        keys: list[bytes] = []
        content_type = accept = None
        for name, value in scope["headers"]:
            name = name.lower()
            if name == b"idempotency-key":
                keys.append(value)
            elif name == b"content-type":
                if content_type is None:
                    content_type = value
            elif name == b"accept" and accept is None:
                accept = value
        if not keys:
            if config.require_key:
                annotate(scope, OUTCOME, "missing_key")
                await send_problem(scope, send, "idempotency-key-missing", config.problem_type_base)
                return
            await self.app(scope, receive, send)
            return
        try:
            if len(keys) > 1:
                raise InvalidKeyError("send exactly one Idempotency-Key header")
            key = parse_key(keys[0])
        except InvalidKeyError as exc:
            annotate(scope, OUTCOME, "invalid_key")
            await send_problem(
                scope, send, "idempotency-key-invalid", config.problem_type_base, detail=str(exc)
            )
            return
        tenant = self._tenant(scope)
        if tenant is None:
            annotate(scope, OUTCOME, "anonymous")
            await self.app(scope, receive, send)
            return
        try:
            body, receive = await read_body(scope, receive, limit=config.max_request_bytes)
        except ClientDisconnected:
            return
        except RequestBodyTooLarge:
            annotate(scope, OUTCOME, "body_too_large")
            detail = f"The request body is larger than {config.max_request_bytes} bytes."
            await send_problem(
                scope, send, "request-body-too-large", config.problem_type_base, detail=detail
            )
            return
        hasher = self._hasher
        record_key = hasher.record_key(tenant, key)
        notes = get_annotations(scope)
        notes[KEY_HASH] = record_key[5:21]
        # hashed once: the fingerprint, the canonical one at the end and a retry's all use it
        head = request_head(scope)
        fingerprint = hasher.digest(head, body)
        token = f"{_PROCESS}{next(_SEQUENCE):016x}"
        # when it started, for the Retry-After a retry is told meanwhile (wall clock: read by
        # every worker)
        started = time()
        lease = records.lease(token, fingerprint, started)
        try:
            existing = await config.record_store.claim(record_key, lease, config.lease_ttl)
        except StoreUnavailable as exc:
            await run_without_idempotency(config, self.app, scope, receive, send, exc)
            return
        if existing is not None:
            await answer_retry(
                config, hasher, self._extra, scope, send, record_key, existing, fingerprint, body
            )
            return
        notes[OUTCOME] = "claimed"
        json_type = is_json(content_type)
        recorder = Recorder(
            config,
            scope,
            record_key,
            token,
            fingerprint,
            lease,
            # at the end of the response, off the first byte's path (and not at all for a
            # response that is not recorded)
            lambda: hasher.canonical(scope, head, body, json_type, fingerprint),
            started=started,
        )
        execution = Execution(config, scope, send, recorder, self._extra, self._heartbeats)
        await execution.serve(self.app, receive, wants_stream(scope, body, json_type, accept))

    def _tenant(self, scope: Scope) -> str | None:
        principal = get_principal(scope)
        if principal is not None:
            return "p:" + principal.id
        resolver = self.config.principal_resolver
        if resolver is not None:
            resolved = resolver(scope)
            if resolved:
                return "r:" + resolved
        if self.config.anonymous == "shared":
            return "anonymous"
        if not self._warned_anonymous:
            self._warned_anonymous = True
            logger.warning(
                "idempotency: a request with an Idempotency-Key has no principal; it runs "
                "without idempotency (mount an auth middleware, set principal_resolver, or "
                "anonymous='shared' for a single-tenant API)"
            )
        return None
