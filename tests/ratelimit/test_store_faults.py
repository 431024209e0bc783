"""A real redis-server frozen (SIGSTOP) under requests that hold concurrency slots.

Frozen rather than stopped: connections hang instead of being refused, so every call has to
time out, and scripts sent during the freeze still run when the server resumes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator

import pytest

from aimiddleware.ratelimit import RateLimitMiddleware, Tier

from ..servers import RedisServer
from .apps import Upstream, call_raw, chat_body, headers_of, status_of
from .conftest import Keep

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

LIMIT = 4
TIMEOUT = 0.3


@pytest.fixture
def frozen_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A server of this test's own: freezing the session's would stall its neighbours."""
    server = RedisServer(tmp_path_factory.mktemp("frozen-ratelimit"))
    server.start()
    try:
        yield server
    finally:
        server.resume()
        server.close()


def slots_free(messages: list[dict[str, object]]) -> int:
    found = re.search(r'"concurrency";r=(\d+)', headers_of(messages)["ratelimit"])  # type: ignore[arg-type]
    assert found is not None
    return int(found.group(1))


async def test_slots_held_across_a_freeze_are_freed_soon_after_redis_returns(
    frozen_redis: RedisServer, prefix: str, closing: Keep, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = Upstream()
    upstream.gate = asyncio.Event()  # streams hold their slot until the gate opens
    limited = closing(
        RateLimitMiddleware(
            upstream.app(),
            tiers=[Tier("t", requests="100000/minute", concurrency=LIMIT)],
            store=frozen_redis.url,
            key_prefix=prefix,
            timeout=TIMEOUT,
        )
    )
    caplog.set_level(logging.WARNING, "aimiddleware.ratelimit")
    held = [asyncio.create_task(call_raw(limited, chat_body(stream=True))) for _ in range(3)]
    for _ in range(500):  # until all three are admitted, each holding a slot
        if len(upstream.bodies) == 3:
            break
        await asyncio.sleep(0.01)
    frozen_redis.pause()
    try:
        # admitted while frozen: fail-open, but its acquire script still runs on resume
        late = asyncio.create_task(call_raw(limited, chat_body(max_tokens=5)))
        await asyncio.sleep(TIMEOUT + 0.2)
        upstream.gate.set()  # every answer ends: their releases cannot reach the store
        ended = await asyncio.gather(*held)
        during = await late
        await asyncio.sleep(0.5)
    finally:
        frozen_redis.resume()
    back = time.monotonic()
    assert status_of(during) == 200
    assert "ratelimit" not in headers_of(during)
    assert [status_of(m) for m in ended] == [200, 200, 200]
    # within about a second every slot is free again: a lone request sees all others free
    free = -1
    while time.monotonic() - back < 1.5:
        free = slots_free(await call_raw(limited, chat_body(max_tokens=5)))
        if free == LIMIT - 1:
            break
        await asyncio.sleep(0.05)
    assert free == LIMIT - 1, f"{LIMIT - 1 - free} slots still taken after Redis returned"
    deferred = [r for r in caplog.records if "retried in the background" in r.getMessage()]
    assert len(deferred) == 1  # one line for the outage, not one per request


async def test_requests_in_flight_finish_within_the_timeout_while_redis_is_frozen(
    frozen_redis: RedisServer, prefix: str, closing: Keep
) -> None:
    upstream = Upstream()
    limited = closing(
        RateLimitMiddleware(
            upstream.app(),
            tiers=[Tier("t", requests="100000/minute", tokens="10000000/minute", concurrency=64)],
            store=frozen_redis.url,
            key_prefix=prefix,
            timeout=TIMEOUT,
        )
    )
    assert status_of(await call_raw(limited, chat_body())) == 200  # connected, scripts loaded
    frozen_redis.pause()
    try:
        started = time.monotonic()
        answers = await asyncio.gather(
            *(call_raw(limited, chat_body(stream=n % 2 == 0)) for n in range(40))
        )
        elapsed = time.monotonic() - started
    finally:
        frozen_redis.resume()
    assert {status_of(m) for m in answers} == {200}  # fail-open, every one of them
    # acquire and settle each wait at most the timeout: no request waits for Redis itself
    assert elapsed < 2 * TIMEOUT + 0.5
