"""A store that fails: the configured fail mode, one log line, never a bare 500."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest

from aimiddleware.context import ASGIApp, Message, Receive, Scope, Send, get_annotations
from aimiddleware.exceptions import StoreUnavailable
from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.stores import Store, store_from_url

from ..servers import RedisServer
from .helpers import BODY, Counter, CountingStore, Result, call, chat_app, scope_for, sse_chunks

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

TIMEOUT = 0.5


@pytest.fixture
async def redis_store(own_redis: RedisServer) -> AsyncIterator[Store]:
    async with store_from_url(f"{own_redis.url}?timeout={TIMEOUT}") as store:
        yield store


def _after(gate: asyncio.Event, app: ASGIApp) -> ASGIApp:
    """``app``, answering only once ``gate`` is set (the request has already been claimed)."""

    async def gated(scope: Scope, receive: Receive, send: Send) -> None:
        async def held(message: Message) -> None:
            if message["type"] == "http.response.start":
                await gate.wait()
            await send(message)

        await app(scope, receive, held)

    return gated


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "aimiddleware.idempotency" and r.levelno >= logging.WARNING
    ]


async def test_redis_stopped_fail_open_runs_the_request_and_says_so(
    own_redis: RedisServer, redis_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    counter = Counter()
    app = IdempotencyMiddleware(
        chat_app(counter), store=redis_store, anonymous="shared", on_store_error="open"
    )
    assert (await call(app)).status == 200
    own_redis.stop()
    scope = scope_for(key="other")
    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        result = await call(app, scope=scope)
        elapsed = time.monotonic() - started
    assert result.status == 200
    assert result.headers["idempotency-applied"] == "false"
    assert counter.runs == 2
    assert elapsed < TIMEOUT + 0.5
    assert get_annotations(scope)["aimiddleware.idempotency.outcome"] == "fail_open"
    [line] = warnings_of(caplog)
    assert "fail-open" in line


async def test_by_default_a_retry_while_the_store_is_down_never_runs_twice(
    own_redis: RedisServer, redis_store: Store
) -> None:
    counter = Counter()
    app = IdempotencyMiddleware(chat_app(counter), store=redis_store, anonymous="shared")
    first = await call(app)
    assert first.status == 200
    own_redis.stop()
    retry = await call(app)  # the same key: the client did not see the first answer
    assert retry.status == 503
    assert retry.headers["retry-after"] == "1"
    assert retry.json()["type"].endswith("#idempotency-store-unavailable")
    assert counter.runs == 1


async def test_redis_stopped_fail_closed_is_503_with_retry_after(
    own_redis: RedisServer, redis_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    counter = Counter()
    app = IdempotencyMiddleware(
        chat_app(counter), store=redis_store, anonymous="shared", on_store_error="closed"
    )
    own_redis.stop()
    with caplog.at_level(logging.WARNING):
        result = await call(app)
    assert result.status == 503
    assert result.headers["retry-after"] == "1"
    assert result.headers["content-type"] == "application/problem+json"
    assert result.json()["type"].endswith("#idempotency-store-unavailable")
    assert counter.runs == 0
    [line] = warnings_of(caplog)
    assert "fail-closed" in line


async def test_a_hanging_redis_answers_within_the_store_timeout(
    own_redis: RedisServer, redis_store: Store
) -> None:
    counter = Counter()
    app = IdempotencyMiddleware(
        chat_app(counter), store=redis_store, anonymous="shared", on_store_error="closed"
    )
    assert (await call(app, key="warm")).status == 200  # the connection exists
    own_redis.pause()
    try:
        started = time.monotonic()
        result = await call(app)
        elapsed = time.monotonic() - started
    finally:
        own_redis.resume()
    assert result.status == 503
    assert elapsed < TIMEOUT + 0.5


async def replayed(app: IdempotencyMiddleware, body: dict[str, object]) -> Result:
    """Retry until the record is there (409 while the key is still held)."""
    deadline = time.monotonic() + 10
    while True:
        result = await call(app, body)
        if result.status != 409:
            return result
        assert time.monotonic() < deadline, "the record was never written"
        await asyncio.sleep(0.05)


async def test_redis_frozen_mid_stream_the_record_is_written_once_it_answers(
    own_redis: RedisServer, redis_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The stream's head promised idempotency (Idempotency-Retention) before Redis froze: the
    client gets its whole stream, and the record is stored from memory when Redis is back."""
    counter = Counter()
    gate = asyncio.Event()
    got_first = asyncio.Event()

    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            got_first.set()

    app = IdempotencyMiddleware(chat_app(counter, gate=gate), store=redis_store, anonymous="shared")
    stream = {**BODY, "stream": True}
    scope = scope_for()
    with caplog.at_level(logging.WARNING):
        task = asyncio.create_task(call(app, stream, scope=scope, on_send=on_send))
        await asyncio.wait_for(got_first.wait(), 5)
        own_redis.pause()
        try:
            gate.set()
            first = await task
        finally:
            own_redis.resume()
        assert first.headers["idempotency-retention"] == "86400"
        assert "idempotency-applied" not in first.headers
        assert first.chunks == sse_chunks(5)  # the client got its whole stream
        assert get_annotations(scope)["aimiddleware.idempotency.recorded"] == "deferred"
        again = await replayed(app, stream)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.chunks == first.chunks
    assert counter.runs == 1
    [line] = warnings_of(caplog)
    assert "written once the store answers again" in line


async def test_redis_frozen_at_completion_the_record_is_written_once_it_answers(
    own_redis: RedisServer, redis_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    counter = Counter()
    gate = asyncio.Event()
    # the claim goes through first, then Redis freezes before the response is complete
    blocked = IdempotencyMiddleware(
        _after(gate, chat_app(counter)), store=redis_store, anonymous="shared"
    )
    with caplog.at_level(logging.WARNING):
        task = asyncio.create_task(call(blocked))
        await asyncio.wait_for(counter.started.wait(), 5)
        own_redis.pause()
        try:
            gate.set()
            first = await task
        finally:
            own_redis.resume()
        assert first.status == 200
        assert first.headers["idempotency-retention"] == "86400"
        again = await replayed(blocked, BODY)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.body == first.body
    assert counter.runs == 1
    assert len(warnings_of(caplog)) == 1


async def test_a_record_the_store_never_takes_is_given_up_with_one_line(
    own_redis: RedisServer, redis_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    counter = Counter()
    gate = asyncio.Event()
    app = IdempotencyMiddleware(
        _after(gate, chat_app(counter)), store=redis_store, anonymous="shared", ttl=1
    )
    with caplog.at_level(logging.WARNING):
        task = asyncio.create_task(call(app))
        await asyncio.wait_for(counter.started.wait(), 5)
        own_redis.stop()
        gate.set()
        assert (await task).status == 200
        for _ in range(100):  # the write-behind retries for ttl (1 s), then gives up
            if len(warnings_of(caplog)) >= 2:
                break
            await asyncio.sleep(0.05)
    fault, given_up = warnings_of(caplog)
    assert "written once the store answers again" in fault
    assert "gave up" in given_up


class FreezesAtCompletion(CountingStore):
    """The real Redis, frozen (SIGSTOP) at the moment a completed record is written: only the
    timing is chosen here, the fault is the server's."""

    def __init__(self, inner: Store, server: RedisServer) -> None:
        super().__init__(inner)
        self.server = server
        self.frozen = False

    async def replace(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        if value[:1] == b"C" and not self.frozen:
            self.frozen = True
            self.server.pause()
            asyncio.get_running_loop().call_later(1.0, self.server.resume)
        return await super().replace(key, expected, value, ttl)


async def test_a_stream_too_large_to_keep_is_stored_when_only_its_completion_failed(
    own_redis: RedisServer, redis_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Its chunk log is complete in the store: only the record naming it is written later."""
    counter = Counter()
    store = FreezesAtCompletion(redis_store, own_redis)
    app = IdempotencyMiddleware(
        chat_app(counter, chunks=8), store=store, anonymous="shared", max_record_bytes=64
    )
    stream = {**BODY, "stream": True}
    scope = scope_for()
    with caplog.at_level(logging.WARNING):
        first = await call(app, stream, scope=scope)
        assert store.frozen
        assert first.chunks == sse_chunks(8)
        assert get_annotations(scope)["aimiddleware.idempotency.recorded"] == "deferred"
        for _ in range(20):  # until Redis answers again (a retry before would fail open)
            with contextlib.suppress(StoreUnavailable):
                await redis_store.ping()
                break
        again = await replayed(app, stream)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.chunks == first.chunks
    assert counter.runs == 1
    assert len(warnings_of(caplog)) == 1
