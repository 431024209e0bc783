"""benchmarks.roundtrips: counting request/response exchanges with a real redis-server."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from benchmarks import roundtrips
from benchmarks.budgets import ROUND_TRIPS
from benchmarks.roundtrips import Exchanges, commands_run
from testkit.servers import RedisServer


@pytest.mark.anyio
async def test_a_command_a_pipeline_and_a_script_are_one_round_trip_each(
    redis_server: RedisServer,
) -> None:
    client = Redis.from_url(redis_server.url)
    exchanges = Exchanges()
    try:
        await client.ping()  # the connection's own set-up is not what is counted below
        with exchanges.counting():
            await client.set("rt:a", "1")
            assert exchanges.count == 1
            async with client.pipeline(transaction=False) as pipe:
                pipe.incr("rt:a").incr("rt:a").get("rt:a")
                assert (await pipe.execute())[-1] == b"3"
            assert exchanges.count == 2
            script = "redis.call('INCR', KEYS[1]); return redis.call('GET', KEYS[1])"
            assert await client.eval(script, 1, "rt:a") == b"4"
            assert exchanges.count == 3
        await client.get("rt:a")
        assert exchanges.count == 3  # the connection's method is itself again
    finally:
        await client.aclose()


def test_commands_run_counts_the_server_side_commands(redis_server: RedisServer) -> None:
    before = commands_run(redis_server.cli("info", "commandstats"))
    redis_server.cli("set", "rt:b", "1")
    redis_server.cli("incr", "rt:b")
    assert commands_run(redis_server.cli("info", "commandstats")) - before == 2


@pytest.mark.anyio
async def test_a_configuration_on_redis_is_measured_with_its_bound(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMW_BENCH_REDIS_URL", redis_server.url)
    [row] = await roundtrips.measure(["idempotency:redis-replay"], 5, redis_server)
    assert row["name"] == "idempotency:redis-replay"
    assert row["bound"] == ROUND_TRIPS["idempotency:redis-replay"][1]
    assert row["round_trips"] >= 1  # a replay reads its record from Redis
    assert row["commands"] >= row["round_trips"]
