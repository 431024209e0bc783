"""Storing a record the client was already promised, after the store failed to take it.

A response carries ``Idempotency-Retention`` from its first byte, long before the record is
complete. When the store fails while the response is recorded (a stream's append, the final
compare-and-set), the response goes on to the client and the record is kept in memory; this
module writes it once the store answers again, in a task of its own, with backoff.

What is written, and when it is safe:

* A stream whose chunk log may have gaps or duplicates (an append that timed out may still
  land later) gets a new chunk log under a fresh token, from the chunks kept in memory, before
  the record that names it is written. A log that was complete is reused.
* The record replaces the value only when that value is still this execution's (its lease,
  its streaming lease, or a completion of its own that landed late), or is set when the key
  is gone (the lease expired during the outage and nobody claimed since). When another
  execution holds the key, it is left alone and the record is given up, with one log line.
* It gives up after ``give_up_after`` seconds (the retention: a record stored later would
  expire at once), with one log line.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ..exceptions import StoreUnavailable
from ..stores import Store
from . import _records as records

__all__ = ["LOG_GRACE", "Pending", "keep_alive", "logger", "write_behind"]

logger = logging.getLogger("aimiddleware.idempotency")

# the chunk log outlives its record, so a replay never finds the record without its chunks
LOG_GRACE: Final = 60.0
_FIRST_DELAY: Final = 0.05
_MAX_DELAY: Final = 1.0

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


@dataclass(slots=True)
class Pending:
    """A completed response that still has to reach the store."""

    store: Store
    key: str
    token: str
    fingerprint: str
    canonical: str
    status: int
    headers: records.Headers
    ttl: float
    body: bytes = b""
    route: str | None = None
    # a stream: the number of chunks in the live log of ``token`` when that log is known to be
    # exact, else (``rewrite``) the chunks a new log is written from
    count: int | None = None
    rewrite: Sequence[bytes] | None = None


def _new_token() -> str:
    return secrets.token_hex(16)


async def write_behind(pending: Pending, give_up_after: float) -> None:
    """Write ``pending`` once the store answers, retrying with backoff; log if it gives up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after
    started = loop.time()
    delay = _FIRST_DELAY
    abandoned: list[str] = []
    token = pending.token
    ours = {token}  # every token a value of this execution in the store may carry
    chunks = pending.rewrite
    count = pending.count
    log_ready = chunks is None
    while True:
        try:
            if chunks is not None and not log_ready:
                # a fresh log per attempt: an append that timed out may still land later
                token = _new_token()
                ours.add(token)
                abandoned.append(token)  # until every chunk of it landed
                log = records.log_key(pending.key, token)
                for chunk in chunks:
                    await pending.store.append(log, chunk, pending.ttl + LOG_GRACE)
                abandoned.pop()
                log_ready = True
                count = len(chunks)
            value = records.completed(
                token,
                pending.fingerprint,
                pending.canonical,
                pending.status,
                pending.headers,
                body=pending.body,
                chunks=count,
                route=pending.route,
            )
            outcome = await _put(pending, value, ours)
        except StoreUnavailable:
            if loop.time() + delay >= deadline:
                logger.warning(
                    "idempotency: gave up storing the record of %s after %.0f s of store "
                    "faults; its response was sent, a retry runs the request again",
                    pending.key,
                    loop.time() - started,
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)
            continue
        if outcome:
            logger.info(
                "idempotency: stored the record of %s %.1f s after the store failed",
                pending.key,
                loop.time() - started,
            )
            if token != pending.token:
                abandoned.append(pending.token)  # the live log, superseded by the new one
        else:
            logger.warning(
                "idempotency: the record of %s was not stored: another request holds its key "
                "(the lease expired during the store outage)",
                pending.key,
            )
            if token != pending.token:
                abandoned.append(token)
        await _drop_logs(pending, abandoned)
        return


async def _put(pending: Pending, value: bytes, ours: set[str]) -> bool:
    """Store ``value`` if the key is free or still ours; ``False`` if another holds it."""
    store = pending.store
    for _ in range(3):  # a value of ours that lands late may move the target once or twice
        current = await store.get(pending.key)
        if current is None:
            existing = await store.claim(pending.key, value, pending.ttl)
            if existing is None:
                return True
            current = existing
        if current == value:
            return True
        try:
            mine = records.decode(current).token in ours
        except ValueError:
            mine = False
        if not mine:
            return False
        if await store.replace(pending.key, current, value, pending.ttl):
            return True
    return False


async def _drop_logs(pending: Pending, tokens: list[str]) -> None:
    # garbage only (no record names them); left to their TTL when the store fails again
    for token in tokens:
        try:
            await pending.store.delete(records.log_key(pending.key, token))
        except StoreUnavailable:
            return
