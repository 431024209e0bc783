"""The record of a claimed request as a state machine, and forwarding apart from recording."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aimiddleware.context import get_annotations
from aimiddleware.exceptions import StoreUnavailable
from aimiddleware.idempotency import IdempotencyOptions
from aimiddleware.idempotency import _records as records
from aimiddleware.idempotency._claim import TRANSITIONS, InvalidTransition, State
from aimiddleware.idempotency._forwarding import Forwarder, Link
from aimiddleware.idempotency._recording import Recorder
from aimiddleware.stores import MemoryStore

from .helpers import scope_for

pytestmark = pytest.mark.anyio

KEY = "idem:0123456789abcdef0123456789abcdef"
TOKEN = "t" * 32
FINGERPRINT = "f" * 32
SSE = [(b"content-type", b"text/event-stream")]
JSON = [(b"content-type", b"application/json")]


async def claimed(**options: Any) -> tuple[Recorder, MemoryStore]:
    store = MemoryStore()
    config = IdempotencyOptions(store=store, **options)
    lease = records.lease(TOKEN, FINGERPRINT)
    assert await store.claim(KEY, lease, config.lease_ttl) is None
    recorder = Recorder(config, scope_for(), KEY, TOKEN, FINGERPRINT, lease, lambda: "c" * 32)
    return recorder, store


def test_the_final_states_have_no_way_out_and_every_state_is_reachable() -> None:
    assert {s for s, nexts in TRANSITIONS.items() if not nexts} == {
        State.STORED,
        State.DEFERRED,
        State.RELEASED,
    }
    assert all(state.final for state in (State.STORED, State.DEFERRED, State.RELEASED))
    seen, todo = {State.CLAIMED}, [State.CLAIMED]
    while todo:
        for nxt in TRANSITIONS[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    assert seen == set(State)


async def test_a_buffered_response_is_stored_and_the_lease_no_longer_renewed() -> None:
    recorder, store = await claimed()
    recorder.start(200, JSON)
    assert recorder.state is State.BUFFERING
    recorder.keep(b'{"id": 1}')
    assert not recorder.done  # renewed while the response is recorded
    await recorder.complete()
    assert recorder.state is State.STORED
    assert recorder.done
    stored = await store.get(KEY)
    assert stored is not None
    assert records.decode(stored).body == b'{"id": 1}'


async def test_a_stream_is_announced_at_its_first_chunk_then_stored() -> None:
    recorder, store = await claimed()
    recorder.start(200, SSE)
    assert recorder.state is State.STREAMING
    await recorder.chunk(b"data: 1\n\n")
    assert recorder.state is State.ANNOUNCED
    stored = await store.get(KEY)
    assert stored is not None
    assert records.decode(stored).kind == records.STREAMING
    await recorder.complete()
    assert recorder.state is State.STORED
    assert await store.chunks(recorder.log) == [b"data: 1\n\n"]


async def test_a_body_too_large_is_dropped_and_the_key_released_at_the_end() -> None:
    recorder, store = await claimed(max_record_bytes=4)
    recorder.start(200, JSON)
    recorder.keep(b"12345")
    assert recorder.state is State.DROPPED
    assert not recorder.done
    await recorder.release(None)
    assert recorder.state is State.RELEASED
    assert await store.get(KEY) is None
    assert get_annotations(recorder.scope)["aimiddleware.idempotency.recorded"] == "too_large"


async def test_an_illegal_move_raises() -> None:
    recorder, store = await claimed()
    with pytest.raises(InvalidTransition, match="CLAIMED -> STORED"):
        await recorder.complete()  # a response that never started cannot end
    lease = await store.get(KEY)
    assert lease is not None
    assert records.decode(lease).kind == records.LEASE
    recorder.start(200, JSON)
    await recorder.complete()
    with pytest.raises(InvalidTransition, match="STORED -> RELEASED"):
        recorder.release("app_error")  # a stored record is never given back


async def test_a_gone_client_stops_the_forwarding_only() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        if sent:
            raise OSError("the client left")
        sent.append(message)

    scope = scope_for()
    forwarder = Forwarder(scope, send, abort=False)
    await forwarder.forward({"type": "http.response.start", "status": 200})
    await forwarder.forward({"type": "http.response.body", "body": b"a", "more_body": True})
    assert forwarder.link is Link.GONE
    assert get_annotations(scope)["aimiddleware.idempotency.client_gone"] is True
    await forwarder.end({"type": "http.response.body", "body": b"", "more_body": False})
    assert forwarder.ended
    assert len(sent) == 1


class FailingAppends(MemoryStore):
    async def append(self, key: str, value: bytes, ttl: float) -> None:
        raise StoreUnavailable("append timed out")


async def test_a_degraded_stream_that_outgrows_its_copy_is_dropped_not_written_broken() -> None:
    store = FailingAppends()
    config = IdempotencyOptions(store=store, max_record_bytes=16)
    lease = records.lease(TOKEN, FINGERPRINT)
    await store.claim(KEY, lease, config.lease_ttl)
    recorder = Recorder(config, scope_for(), KEY, TOKEN, FINGERPRINT, lease, lambda: "c" * 32)
    recorder.start(200, SSE)
    await recorder.chunk(b"data: 1\n\n")
    assert recorder.state is State.DEGRADED  # kept in memory, to be written behind
    await recorder.chunk(b"data: 2 and more\n\n")
    assert recorder.state is State.DROPPED
    assert get_annotations(recorder.scope)["aimiddleware.idempotency.recorded"] == "store_error"


class SlowReplace(MemoryStore):
    """A replace that lands at once but answers late, and a renewal that sees its new value."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()
        self.landed = asyncio.Event()

    async def replace(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        won = await super().replace(key, expected, value, ttl)
        self.landed.set()
        await self.answer.wait()
        return won


async def test_a_renewal_that_misses_a_replace_still_in_flight_does_not_lose_the_claim() -> None:
    store = SlowReplace()
    config = IdempotencyOptions(store=store)
    lease = records.lease(TOKEN, FINGERPRINT, 1700000000.0)
    await store.claim(KEY, lease, config.lease_ttl)
    recorder = Recorder(config, scope_for(), KEY, TOKEN, FINGERPRINT, lease, lambda: "c" * 32)
    recorder.start(200, SSE)
    announcing = asyncio.create_task(recorder.announce())
    await store.landed.wait()  # the store holds the streaming lease; its answer is on the way
    await recorder._renew()  # compares with the old lease: not renewed
    assert recorder.state is State.ANNOUNCED  # not taken for a lost claim
    store.answer.set()
    await announcing
    assert recorder.lease != lease
    await recorder._renew()
    assert recorder.state is State.ANNOUNCED
