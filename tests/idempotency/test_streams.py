"""Streamed responses: recorded chunk by chunk, replayed as the same stream, never truncated."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aimiddleware.context import Message, get_annotations
from aimiddleware.idempotency import FollowedStreamAbandoned, IdempotencyMiddleware
from aimiddleware.stores import Store

from .helpers import BODY, Counter, CountingStore, Result, call, chat_app, scope_for, sse_chunks

pytestmark = pytest.mark.anyio

STREAM = {**BODY, "stream": True}


def shared(app: Any, store: Store, **options: Any) -> IdempotencyMiddleware:
    return IdempotencyMiddleware(app, store=store, anonymous="shared", **options)


async def replay_when_stored(app: Any) -> Result:
    """Retry until the first request's record is complete (409 while it still runs)."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        result = await call(app, STREAM)
        if result.status != 409:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the first request never completed")
        await asyncio.sleep(0.02)


async def test_streamed_replay_is_the_same_stream_chunk_for_chunk(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter, chunks=8), store)
    first = await call(app, STREAM)
    second = await call(app, STREAM)
    assert counter.runs == 1
    assert first.chunks == sse_chunks(8)
    assert second.chunks == first.chunks  # same ids, same boundaries
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["x-run"] == "1"
    bodies = [m for m in second.messages if m["type"] == "http.response.body"]
    assert all(m["more_body"] for m in bodies[:-1])
    assert bodies[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_the_first_byte_is_not_delayed(store: Store) -> None:
    gate = asyncio.Event()
    first_chunk = asyncio.Event()

    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            first_chunk.set()

    app = shared(chat_app(Counter(), gate=gate), store)
    task = asyncio.create_task(call(app, STREAM, on_send=on_send))
    # the app holds its second chunk until the gate opens: the first must already be out
    await asyncio.wait_for(first_chunk.wait(), 5)
    assert not task.done()
    gate.set()
    result = await task
    assert result.chunks == sse_chunks(5)


async def test_outer_cancel_mid_stream_still_stores_the_complete_answer(store: Store) -> None:
    """The SSE middleware outside cancels us when the client leaves: the generation goes on."""
    counter = Counter()
    gate = asyncio.Event()
    got_first = asyncio.Event()

    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            got_first.set()

    app = shared(chat_app(counter, gate=gate), store)
    scope = scope_for()
    messages: list[Message] = []

    async def client() -> None:
        result = await call(app, STREAM, scope=scope, on_send=on_send)
        messages.extend(result.messages)

    task = asyncio.create_task(client())
    await asyncio.wait_for(got_first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    retry = await replay_when_stored(app)
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.chunks == sse_chunks(5)
    assert counter.runs == 1
    annotations = get_annotations(scope)
    assert annotations["aimiddleware.idempotency.client_gone"] is True
    assert annotations["aimiddleware.idempotency.recorded"] == "stored"


async def test_a_request_asking_for_a_stream_by_accept_survives_an_outer_cancel(
    store: Store,
) -> None:
    """``Accept: text/event-stream`` asks for a stream as ``"stream": true`` does."""
    counter = Counter()
    gate = asyncio.Event()
    got_first = asyncio.Event()

    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            got_first.set()

    app = shared(chat_app(counter, gate=gate), store)

    def scope() -> dict[str, Any]:
        # not a JSON content type: only the Accept header can tell the middleware
        raw = scope_for(headers=[(b"accept", b"text/event-stream")])
        raw["headers"] = [(b"content-type", b"text/plain"), *raw["headers"][1:]]
        return raw

    task = asyncio.create_task(call(app, STREAM, scope=scope(), on_send=on_send))
    await asyncio.wait_for(got_first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    deadline = asyncio.get_running_loop().time() + 5.0
    while (retry := await call(app, STREAM, scope=scope())).status == 409:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.chunks == sse_chunks(5)
    assert counter.runs == 1


async def test_an_outer_cancel_of_a_plain_request_releases_the_key(store: Store) -> None:
    """A request that asks for no stream runs inline: cancelled from outside, it stops and its
    key is released, so the retry runs again (as in abort mode)."""
    counter = Counter()
    app = shared(chat_app(counter, delay=5), store)
    scope = scope_for()
    task = asyncio.create_task(call(app, scope=scope))
    await asyncio.wait_for(counter.started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    quick = shared(chat_app(counter), store)
    for _ in range(100):  # the release runs in a task of its own after the cancel
        if (retry := await call(quick)).status != 409:
            break
        await asyncio.sleep(0.01)
    assert get_annotations(scope)["aimiddleware.idempotency.recorded"] == "cancelled"
    assert retry.status == 200
    assert "idempotent-replayed" not in retry.headers
    assert counter.runs == 2


async def test_a_disconnect_is_hidden_from_a_plain_request(store: Store) -> None:
    counter = Counter()
    gone = asyncio.Event()
    gone.set()  # the client is gone before the app even reads past its body

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        counter.runs += 1
        with pytest.raises(TimeoutError):  # the client left, but the app is not told
            await asyncio.wait_for(receive(), 0.1)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done", "more_body": False})

    first = await call(shared(app, store), disconnect=gone)
    assert first.body == b""  # forwarding stopped: nobody is there
    again = await call(shared(app, store))
    assert again.headers["idempotent-replayed"] == "true"
    assert again.body == b"done"  # but the response was finished and stored
    assert counter.runs == 1


async def test_client_disconnect_is_hidden_from_the_app_until_it_finishes(store: Store) -> None:
    """Without an outer canceller the app sees no disconnect; the stream is stored complete."""
    counter = Counter()
    gone = asyncio.Event()
    forwarded: list[bytes] = []

    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            forwarded.append(message["body"])
            gone.set()  # the client leaves after the first chunk

    app = shared(chat_app(counter, chunk_delay=0.02), store)
    await call(app, STREAM, disconnect=gone, on_send=on_send)
    assert len(forwarded) < len(sse_chunks(5))  # forwarding stopped when the client left
    retry = await call(app, STREAM)
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.chunks == sse_chunks(5)
    assert counter.runs == 1


async def test_abort_mode_cancels_the_generation_and_releases_the_key(store: Store) -> None:
    counter = Counter()
    gate = asyncio.Event()
    got_first = asyncio.Event()

    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            got_first.set()

    app = shared(chat_app(counter, gate=gate), store, on_disconnect="abort")
    task = asyncio.create_task(call(app, STREAM, on_send=on_send))
    await asyncio.wait_for(got_first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    retry = await replay_when_stored(app)  # the release runs in the background
    assert "idempotent-replayed" not in retry.headers
    assert retry.chunks == sse_chunks(5)
    assert counter.runs == 2


async def test_abort_mode_with_a_disconnect_never_stores_the_truncated_stream(
    store: Store,
) -> None:
    counter = Counter()
    gone = asyncio.Event()

    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            gone.set()

    app = shared(chat_app(counter, chunk_delay=0.05), store, on_disconnect="abort")
    scope = scope_for()
    cut = await call(app, STREAM, scope=scope, disconnect=gone, on_send=on_send)
    assert not cut.complete
    assert get_annotations(scope)["aimiddleware.idempotency.recorded"] == "incomplete"
    retry = await call(app, STREAM)
    assert "idempotent-replayed" not in retry.headers
    assert retry.chunks == sse_chunks(5)
    assert counter.runs == 2


async def test_a_stream_that_fails_midway_is_not_stored(store: Store) -> None:
    counter = Counter()
    broken = shared(chat_app(counter, fail_mid_stream=True), store)
    with pytest.raises(RuntimeError, match="mid-stream"):
        await call(broken, STREAM)
    healthy = shared(chat_app(counter), store)
    retry = await call(healthy, STREAM)
    assert "idempotent-replayed" not in retry.headers
    assert retry.chunks == sse_chunks(5)
    assert counter.runs == 2


async def test_a_retry_during_a_stream_is_409_by_default(store: Store) -> None:
    gate = asyncio.Event()
    counter = Counter()
    app = shared(chat_app(counter, gate=gate), store)
    first = asyncio.create_task(call(app, STREAM))
    await asyncio.wait_for(counter.started.wait(), 5)
    second = await call(app, STREAM)
    assert second.status == 409
    gate.set()
    await first


async def test_follow_streams_joins_the_live_stream_from_its_first_chunk(store: Store) -> None:
    gate = asyncio.Event()
    counter = Counter()
    app = shared(chat_app(counter, gate=gate), store, follow_streams=True, poll_interval=0.01)
    first = asyncio.create_task(call(app, STREAM))
    await asyncio.wait_for(counter.started.wait(), 5)
    follower_scope = scope_for()
    follower = asyncio.create_task(call(app, STREAM, scope=follower_scope))
    await asyncio.sleep(0.2)
    assert not follower.done()  # it waits on the live stream
    gate.set()
    original, followed = await first, await follower
    assert counter.runs == 1
    assert followed.chunks == original.chunks == sse_chunks(5)
    assert followed.headers["idempotent-replayed"] == "true"
    assert followed.complete
    assert get_annotations(follower_scope)["aimiddleware.idempotency.outcome"] == "followed"


async def test_a_followed_stream_that_dies_aborts_the_follower(store: Store) -> None:
    counter = Counter()
    app = shared(
        chat_app(counter, fail_mid_stream=True, chunk_delay=0.1),
        store,
        follow_streams=True,
        poll_interval=0.01,
    )
    first = asyncio.create_task(call(app, STREAM))
    await asyncio.wait_for(counter.started.wait(), 5)
    await asyncio.sleep(0.15)  # the stream has started
    with pytest.raises(FollowedStreamAbandoned):
        await call(app, STREAM)
    with pytest.raises(RuntimeError):
        await first


class NoRenewStore(CountingStore):
    """A store whose lease renewals are lost, as when the worker holding the claim is frozen."""

    async def renew(self, key: str, expected: bytes, ttl: float) -> bool:
        return True


async def test_the_lease_is_renewed_while_a_long_request_runs(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter, delay=1.6), store, lease_ttl=1)
    first = asyncio.create_task(call(app))
    await asyncio.wait_for(counter.started.wait(), 5)
    await asyncio.sleep(1.2)  # past the lease: only the heartbeat keeps the claim
    assert (await call(app)).status == 409
    await first
    assert (await call(app)).headers["idempotent-replayed"] == "true"
    assert counter.runs == 1


async def test_an_unrenewed_claim_expires_within_the_lease(store: Store) -> None:
    counter = Counter()
    frozen = shared(chat_app(counter, delay=1.6), NoRenewStore(store), lease_ttl=1)
    scope = scope_for()
    first = asyncio.create_task(call(frozen, scope=scope))
    await asyncio.wait_for(counter.started.wait(), 5)
    await asyncio.sleep(1.2)
    other = shared(chat_app(counter), store)
    assert (await call(other)).status == 200  # the claim expired: the request runs again
    await first
    # the late first execution must not overwrite the record of the one that took over
    assert get_annotations(scope)["aimiddleware.idempotency.recorded"] == "lease_lost"
    assert (await call(other)).json()["run"] == 2


async def test_a_follower_on_another_worker_gets_the_same_stream(store: Store) -> None:
    """Two middleware instances sharing one store, as two workers share Redis."""
    gate = asyncio.Event()
    counter = Counter()
    worker_a = shared(chat_app(counter, gate=gate), store, follow_streams=True)
    worker_b = shared(chat_app(counter), store, follow_streams=True, poll_interval=0.01)
    first = asyncio.create_task(call(worker_a, STREAM))
    await asyncio.wait_for(counter.started.wait(), 5)
    await asyncio.sleep(0.1)  # the first chunk is out and the stream announced
    follower = asyncio.create_task(call(worker_b, STREAM))
    await asyncio.sleep(0.1)
    gate.set()
    original, followed = await first, await follower
    assert counter.runs == 1
    assert followed.chunks == original.chunks == sse_chunks(5)
    assert followed.headers["idempotent-replayed"] == "true"


async def test_a_disconnect_reported_once_the_stream_ended_does_not_cut_its_record_short(
    store: Store,
) -> None:
    """Servers report ``http.disconnect`` as soon as a response's body has ended (uvicorn
    does), and Starlette's StreamingResponse (ASGI spec < 2.4) cancels itself on it: that must
    not cancel the write of the record, which the client was promised."""
    counter = Counter()
    app = shared(chat_app(counter, chunks=3), store)
    ended = asyncio.Event()

    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            ended.set()

    scope = scope_for()
    first = await call(app, STREAM, scope=scope, disconnect=ended, on_send=on_send)
    assert first.complete
    assert get_annotations(scope)["aimiddleware.idempotency.recorded"] == "stored"
    # the end of the body went out after the record was stored: the retry is a replay at once
    again = await call(app, STREAM)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.chunks == first.chunks
    assert counter.runs == 1


async def test_a_last_event_sent_with_the_end_of_the_body_is_not_held_back(store: Store) -> None:
    """An app that sends its last event in the final body message: the event goes out before
    the record is written, only the end of the body follows it."""
    counter = Counter()
    events = [b"data: one\n\n", b"data: two\n\n"]

    async def raw(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        counter.runs += 1
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": events[0], "more_body": True})
        await send({"type": "http.response.body", "body": events[1], "more_body": False})

    app = shared(raw, store)
    first = await call(app, STREAM)
    bodies = [m for m in first.messages if m["type"] == "http.response.body"]
    assert [m["body"] for m in bodies] == [*events, b""]
    assert [m["more_body"] for m in bodies] == [True, True, False]
    again = await call(app, STREAM)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.chunks == events
    assert counter.runs == 1
