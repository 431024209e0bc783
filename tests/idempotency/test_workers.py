"""Exactly once across processes: uvicorn --workers 4 sharing one real redis-server."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from ..processes import serving_process
from ..servers import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis, pytest.mark.e2e]


@pytest.fixture
def four_workers(redis_server: RedisServer) -> Iterator[tuple[int, str]]:
    prefix = f"w{uuid.uuid4().hex[:8]}:"
    env = {**os.environ, "AIMW_TEST_REDIS_URL": redis_server.url, "AIMW_TEST_PREFIX": prefix}
    command = [sys.executable, "-m", "tests.serve", "tests.idempotency.workers_app:app"]
    with serving_process([*command, "--workers", "4"], env=env, stop_timeout=15) as server:
        yield server.port, prefix


async def test_200_concurrent_same_key_requests_on_4_workers_run_once(
    four_workers: tuple[int, str], redis_server: RedisServer
) -> None:
    port, prefix = four_workers
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Idempotency-Key": f"agent-retry-{uuid.uuid4()}"}
    body = {"model": "m", "messages": [{"role": "user", "content": "once"}]}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        # every worker is up: a few warm-up requests without a key land on several of them
        await asyncio.gather(*(client.post(url, json=body) for _ in range(8)))
        redis = Redis.from_url(redis_server.url)
        try:
            warm = int(await redis.get(f"{prefix}executions") or 0)
            responses = await asyncio.gather(
                *(client.post(url, json=body, headers=headers) for _ in range(200))
            )
            executions = int(await redis.get(f"{prefix}executions") or 0) - warm
        finally:
            await redis.aclose()
        assert executions == 1
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 409}
        fresh = [r for r in responses if r.status_code == 200]
        assert len({r.content for r in fresh}) == 1  # the original and any replays agree
        replay = await client.post(url, json=body, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == fresh[0].content
