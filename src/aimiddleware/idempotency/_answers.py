"""Answering a request whose key is already claimed, or whose claim the store could not take."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

from ..context import ASGIApp, Message, Receive, Scope, Send, annotate, set_route_template_override
from ..exceptions import StoreUnavailable
from . import _records as records
from ._estimate import expected_wait, length_bound
from ._keys import Hasher
from ._options import IdempotencyOptions
from ._problems import send_problem
from ._recovery import logger
from ._replay import IncompleteRecord, follow, load_chunks, replay

__all__ = ["OUTCOME", "answer_retry", "run_without_idempotency", "unavailable"]

OUTCOME: Final = "aimiddleware.idempotency.outcome"
NOT_APPLIED: Final = (b"idempotency-applied", b"false")


async def answer_retry(
    config: IdempotencyOptions,
    hasher: Hasher,
    extra: Sequence[tuple[bytes, bytes]],
    scope: Scope,
    send: Send,
    key: str,
    existing: bytes,
    fingerprint: str,
    body: bytes,
) -> None:
    """Answer a request whose key another request claimed: the stored response (replayed or
    followed live), 422 for a different request under the key, else 409."""
    try:
        record = records.decode(existing)
    except ValueError:
        logger.warning("idempotency: the store holds a value that is not a record")
        await unavailable(config, scope, send, "corrupt_record")
        return
    if record.fingerprint != fingerprint and (
        # a lease knows only the bytes as sent: a retry that differs in JSON key order
        # or whitespace waits (409) until the record can be compared canonically
        not record.complete or record.canonical != hasher.canonical_fingerprint(scope, body)
    ):
        if not record.complete:
            # another request's body says nothing about the length of the running one
            await _conflict(config, scope, send, record, None)
            return
        annotate(scope, OUTCOME, "mismatch")
        await send_problem(scope, send, "idempotency-key-reused", config.problem_type_base)
        return
    store = config.record_store
    if record.complete:
        chunks = None
        if record.streaming:
            try:
                chunks = await load_chunks(store, key, record)
            except (StoreUnavailable, IncompleteRecord) as exc:
                # the record exists: running the app again would break exactly-once
                logger.warning("idempotency: could not read a stored stream: %s", exc)
                await unavailable(config, scope, send, "replay_failed")
                return
        annotate(scope, OUTCOME, "replayed")
        if record.route is not None:
            set_route_template_override(scope, record.route)
        await replay(send, record, chunks, extra)
        return
    if record.kind == records.STREAMING and config.follow_streams:
        annotate(scope, OUTCOME, "followed")
        if record.route is not None:
            set_route_template_override(scope, record.route)
        try:
            await follow(store, key, record, send, extra, config.poll_interval)
        except StoreUnavailable as exc:
            logger.warning("idempotency: following a stream failed: %s", exc)
            raise
        return
    # the same request as the running one: its bound on the stream's length is the running one's
    await _conflict(config, scope, send, record, length_bound(scope))


async def _conflict(
    config: IdempotencyOptions,
    scope: Scope,
    send: Send,
    record: records.Record,
    chunks: int | None,
) -> None:
    """409, with the time the running request is expected to take still (:mod:`._estimate`)."""
    annotate(scope, OUTCOME, "conflict")
    wait = expected_wait(
        record,
        time.time(),
        chunks=chunks,
        minimum=config.retry_after,
        lease_ttl=config.lease_ttl,
    )
    await send_problem(
        scope, send, "idempotency-key-in-flight", config.problem_type_base, retry_after=wait
    )


async def unavailable(config: IdempotencyOptions, scope: Scope, send: Send, outcome: str) -> None:
    """503 with ``Retry-After``: the key could not be checked, the request did not run."""
    annotate(scope, OUTCOME, outcome)
    await send_problem(
        scope,
        send,
        "idempotency-store-unavailable",
        config.problem_type_base,
        retry_after=config.retry_after,
    )


async def run_without_idempotency(
    config: IdempotencyOptions,
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    exc: StoreUnavailable,
) -> None:
    """The store failed before the claim: 503 (fail-closed), or run the request with
    ``Idempotency-Applied: false`` (fail-open)."""
    if config.on_store_error == "closed":
        logger.warning("idempotency: store unavailable, answering 503 (fail-closed): %s", exc)
        await unavailable(config, scope, send, "fail_closed")
        return
    logger.warning(
        "idempotency: store unavailable, running the request without idempotency (fail-open): %s",
        exc,
    )
    annotate(scope, OUTCOME, "fail_open")

    async def _send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), NOT_APPLIED]}
        await send(message)

    await app(scope, receive, _send)
