"""The Retry-After of a 409: the time the request that holds the key is expected to run still."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from aimiddleware.context import Message, read_body
from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.idempotency import _records as records
from aimiddleware.idempotency._estimate import FRAMING, expected_wait, length_bound
from aimiddleware.stores import Store

from ..asgi import request_receive
from .helpers import BODY, Counter, CountingStore, call, chat_app, scope_for

pytestmark = pytest.mark.anyio

TOKEN, FINGERPRINT = "t" * 32, "f" * 32
STREAM = {**BODY, "stream": True}


def lease(started: float | None) -> records.Record:
    return records.decode(records.lease(TOKEN, FINGERPRINT, started))


def stream(
    started: float, first: float, written: int | None = None, at: float = 0.0
) -> records.Record:
    value = records.streaming_lease(
        TOKEN, FINGERPRINT, 200, [], "/v1/chat/completions", started=started, first=first
    )
    if written is not None:
        value = records.progressed(value, written, at)
    return records.decode(value)


def wait(record: records.Record, now: float, chunks: int | None = None, **options: Any) -> float:
    settings = {"minimum": 1, "lease_ttl": 30.0, **options}
    return expected_wait(record, now, chunks=chunks, **settings)


# -- the estimate ----------------------------------------------------------------------------


def test_a_request_is_expected_to_run_as_long_again_as_it_has_run() -> None:
    assert wait(lease(1000.0), 1004.0) == 4.0
    # what a stream that has not shown its pace, or whose length is unbounded, is told too
    assert wait(stream(1000.0, 1001.0), 1004.0, chunks=100) == 4.0
    assert wait(stream(1000.0, 1001.0, written=20, at=1003.0), 1004.0) == 4.0
    assert wait(stream(1000.0, 1001.0, written=1, at=1001.5), 1004.0, chunks=100) == 4.0


def test_a_stream_of_known_length_is_expected_to_run_its_remaining_chunks_at_its_pace() -> None:
    # 11 chunks in the log 1 s after the first: 10 chunks a second; 53 at most, so 42 to come
    record = stream(1000.0, 1000.5, written=11, at=1001.5)
    assert record.written == 11
    assert wait(record, 1001.5, chunks=53) == pytest.approx(4.2)
    # half a second after that progress was written, half a second less
    assert wait(record, 1002.0, chunks=53) == pytest.approx(3.7)
    # a stream past the length it was expected to have ends any moment: the minimum
    assert wait(record, 1002.0, chunks=10) == 1.0


def test_the_wait_is_never_below_the_minimum_nor_above_two_thirds_of_the_lease() -> None:
    assert wait(lease(1000.0), 1000.1) == 1.0  # just started
    assert wait(lease(1000.0), 1000.1, minimum=0) == pytest.approx(0.1)
    assert wait(lease(1000.0), 1100.0) == 20.0  # renewed every third: 20 s always left
    assert wait(lease(1000.0), 1100.0, lease_ttl=9.0) == 6.0
    slow = stream(1000.0, 1000.5, written=2, at=1010.5)  # a chunk every 10 s, 1000 to come
    assert wait(slow, 1010.5, chunks=1000) == 20.0
    # another worker's clock a little ahead: no negative time has passed
    assert wait(lease(1000.0), 999.0) == 1.0


def test_a_lease_written_before_leases_had_a_clock_gets_the_minimum() -> None:
    old = records.decode(records.lease(TOKEN, FINGERPRINT))
    assert old.started is None
    assert wait(old, 1_000_000.0, minimum=2) == 2.0


def test_the_length_of_a_stream_is_bounded_by_its_max_tokens_for_each_choice() -> None:
    def bound(body: dict[str, Any], path: str = "/v1/chat/completions") -> int | None:
        raw = json.dumps(body).encode()
        scope = scope_for(path=path)
        asyncio.run(read_body(scope, request_receive(raw)))
        return length_bound(scope)

    assert bound({**STREAM, "max_tokens": 40}) == 40 + FRAMING
    assert bound({**STREAM, "max_completion_tokens": 30, "max_tokens": 99, "n": 2}) == 60 + FRAMING
    assert bound({"model": "m", "input": "hi", "max_output_tokens": 16}, "/v1/responses") == 19
    assert bound(STREAM) is None
    assert bound({"anything": 1}, "/v1/orders") is None


# -- the records -----------------------------------------------------------------------------


def test_leases_carry_their_clock_and_streams_their_progress_in_milliseconds() -> None:
    assert lease(1700000000.25).started == 1700000000.25
    record = stream(1700000000.0, 1700000000.5, written=7, at=1700000001.5)
    assert (record.started, record.first) == (1700000000.0, 1700000000.5)
    assert (record.written, record.written_at) == (7, 1700000001.5)
    assert (record.status, record.route) == (200, "/v1/chat/completions")
    assert records.decode(records.streaming_lease(TOKEN, FINGERPRINT, 200, [])).started is None


def test_a_lease_whose_tail_a_later_version_wrote_still_decodes() -> None:
    for tail in (b'{"t":1700000000000,"x":[1]}', b"v2;t=1"):
        record = records.decode(records.lease(TOKEN, FINGERPRINT) + tail)
        assert (record.kind, record.token, record.fingerprint) == (
            records.LEASE,
            TOKEN,
            FINGERPRINT,
        )
    value = records.streaming_lease(TOKEN, FINGERPRINT, 200, [], started=1.0, first=2.0)
    extended = value[:-1] + b',"z":"later"}'
    assert records.decode(extended).first == 2.0


# -- through the middleware, on every store -------------------------------------------------


class Watching(CountingStore):
    """Remembers the record key the middleware claims, to read the lease as a retry would."""

    key: str | None = None

    async def claim(self, key: str, value: bytes, ttl: float) -> bytes | None:
        if self.key is None:
            self.key = key
        return await super().claim(key, value, ttl)


async def test_a_retry_mid_stream_is_told_the_time_the_stream_still_needs(store: Store) -> None:
    watching = Watching(store)
    app = IdempotencyMiddleware(
        chat_app(Counter(), chunks=60, chunk_delay=0.05), store=watching, anonymous="shared"
    )
    body = {**STREAM, "max_tokens": 60}
    sent = 0
    fifteen = asyncio.Event()

    async def on_send(message: Message) -> None:
        nonlocal sent
        if message["type"] == "http.response.body" and message.get("body"):
            sent += 1
            if sent == 15:
                fifteen.set()

    first = asyncio.create_task(call(app, body, on_send=on_send))
    # 15 chunks 50 ms apart: the lease has said how far the stream is (0.25 s after its first)
    await asyncio.wait_for(fifteen.wait(), 10)
    assert watching.key is not None
    value = await store.get(watching.key)
    assert value is not None
    running = records.decode(value)
    assert running.kind == records.STREAMING
    assert running.written is not None
    assert running.written >= 2
    assert running.started is not None
    assert running.first is not None
    assert running.started <= running.first <= (running.written_at or 0)

    retry = await call(app, body)
    assert retry.status == 409
    advertised = int(retry.headers["retry-after-ms"])
    # 46 chunks to come, no faster than one per 50 ms: more than the fixed second of before,
    # within two thirds of the lease
    assert 1000 < advertised <= 20_000
    assert (await first).status == 200


async def test_a_lease_the_previous_version_wrote_is_read_and_answered_with_the_minimum(
    store: Store,
) -> None:
    watching = Watching(store)
    app = IdempotencyMiddleware(chat_app(Counter()), store=watching, anonymous="shared")
    assert (await call(app)).status == 200  # learns the record key
    assert watching.key is not None
    stored = await store.get(watching.key)
    assert stored is not None
    fingerprint = records.decode(stored).fingerprint
    await store.delete(watching.key)
    # the same request running on a worker of the previous version: a lease without its clock
    await store.set(watching.key, records.lease(TOKEN, fingerprint), 30)
    conflict = await call(app)
    assert conflict.status == 409
    assert conflict.headers["retry-after-ms"] == "1000"
