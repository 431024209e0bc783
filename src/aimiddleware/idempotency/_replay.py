"""Answering a retry from the store: a completed record, or a stream still being generated."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ..context import Send
from ..exceptions import AimiddlewareError
from ..stores import Store
from . import _records as records

__all__ = ["FollowedStreamAbandoned", "IncompleteRecord", "follow", "load_chunks", "replay"]

REPLAYED = (b"idempotent-replayed", b"true")


class IncompleteRecord(Exception):  # noqa: N818 (a state of the store, found while reading)
    """A completed stream record whose chunk log has fewer chunks than it says."""


class FollowedStreamAbandoned(AimiddlewareError):  # noqa: N818 (what happened, not whose fault)
    """The stream a retry was following stopped before it completed.

    The first request failed or its worker died mid-stream, so its response was not stored.
    Raised after the follower's response started: the server then aborts the connection, and
    the client sees a truncated stream rather than one that looks complete. A retry with the
    same key runs the request again.
    """


async def load_chunks(store: Store, key: str, record: records.Record) -> list[bytes]:
    """The chunks of a completed stream record, before anything is sent to the client."""
    total = record.chunks or 0
    chunks = await store.chunks(records.log_key(key, record.token))
    if len(chunks) < total:
        raise IncompleteRecord(f"{len(chunks)} of {total} chunks left in the log")
    return chunks[:total]


async def replay(
    send: Send,
    record: records.Record,
    chunks: Sequence[bytes] | None,
    extra_headers: Sequence[tuple[bytes, bytes]],
) -> None:
    """Send a completed record: the same status, headers and body bytes (or the same chunks)."""
    headers = [*(record.headers or ()), REPLAYED, *extra_headers]
    await send({"type": "http.response.start", "status": record.status, "headers": headers})
    if chunks is None:
        await send({"type": "http.response.body", "body": record.body, "more_body": False})
        return
    for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def follow(
    store: Store,
    key: str,
    record: records.Record,
    send: Send,
    extra_headers: Sequence[tuple[bytes, bytes]],
    poll_interval: float,
) -> None:
    """Follow a stream another request is generating, from its first chunk, until it completes.

    Polls the execution's chunk log and the record: the Store protocol has no notifications.

    :raises FollowedStreamAbandoned: the first request stopped before its stream completed.
    :raises StoreUnavailable: the store failed mid-way (the response has started).
    """
    log = records.log_key(key, record.token)
    headers = [*(record.headers or ()), REPLAYED, *extra_headers]
    await send({"type": "http.response.start", "status": record.status, "headers": headers})
    sent = 0
    while True:
        for chunk in await store.chunks(log, sent):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += 1
        value = await store.get(key)
        current = records.decode(value) if value is not None else None
        if current is None or current.token != record.token:
            raise FollowedStreamAbandoned("the stream being followed stopped before completing")
        if current.complete:
            total = current.chunks or 0
            if sent < total:
                for chunk in (await store.chunks(log, sent))[: total - sent]:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await asyncio.sleep(poll_interval)
