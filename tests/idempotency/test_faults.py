"""A store that fails: the configured fail mode, one log line, never a bare 500."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aimiddleware._asgi import Message, get_annotations
from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.stores import Store, store_from_url

from ..servers import RedisServer
from .helpers import BODY, Counter, call, chat_app, scope_for, sse_chunks

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

TIMEOUT = 0.5


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone: it gets stopped and paused."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_store(own_redis: RedisServer) -> AsyncIterator[Store]:
    async with store_from_url(f"{own_redis.url}?timeout={TIMEOUT}") as store:
        yield store


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
    app = IdempotencyMiddleware(chat_app(counter), store=redis_store, anonymous="shared")
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


async def test_redis_lost_mid_stream_finishes_the_stream_unstored_with_one_line(
    own_redis: RedisServer, redis_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    counter = Counter()
    gate = asyncio.Event()
    got_first = asyncio.Event()

    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            got_first.set()

    app = IdempotencyMiddleware(chat_app(counter, gate=gate), store=redis_store, anonymous="shared")
    scope = scope_for()
    with caplog.at_level(logging.WARNING):
        task = asyncio.create_task(
            call(app, {**BODY, "stream": True}, scope=scope, on_send=on_send)
        )
        await asyncio.wait_for(got_first.wait(), 5)
        own_redis.stop()
        gate.set()
        result = await task
    assert result.chunks == sse_chunks(5)  # the client got its whole stream
    assert get_annotations(scope)["aimiddleware.idempotency.recorded"] == "store_error"
    assert len(warnings_of(caplog)) == 1
