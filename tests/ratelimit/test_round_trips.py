"""Redis round trips per request, counted by the server itself (INFO commandstats)."""

from __future__ import annotations

import httpx
import pytest

from aimiddleware.ratelimit import RateLimitMiddleware, Tier

from ..servers import RedisCluster, RedisServer
from .apps import Upstream, chat_body
from .conftest import Keep

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


# commands run inside a script are counted by the server too: these are the ones our
# scripts use, so every other command a client sends is a round trip
_INSIDE_SCRIPTS = {
    "time", "hmget", "hset", "pexpire", "zadd", "zrem", "zremrangebyscore", "zcard", "zrange",
    "zscore", "info",
}  # fmt: skip


def commands(server: RedisServer) -> int:
    total = 0
    for line in server.cli("info", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name = line[len("cmdstat_") :].split(":", 1)[0]
            if name not in _INSIDE_SCRIPTS:
                total += int(line.split("calls=", 1)[1].split(",", 1)[0])
    return total


async def per_request(server: RedisServer, app: RateLimitMiddleware, path: str) -> float:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        await http.post(path, json=chat_body(max_tokens=10))  # loads the scripts once
        before = commands(server)
        for _ in range(20):
            assert (await http.post(path, json=chat_body(max_tokens=10))).status_code == 200
        return (commands(server) - before) / 20


async def test_all_limits_of_a_request_cost_one_round_trip(
    redis_server: RedisServer, prefix: str, closing: Keep
) -> None:
    tier = Tier("t", requests="1000/second;100000/minute", tokens="100000/minute")
    requests_only = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", requests="1000/second;100000/minute")],
            store=redis_server.url,
            key_prefix=prefix + "a:",
        )
    )
    # two request windows: checked and charged in one script call
    assert await per_request(redis_server, requests_only, "/ping") == 1
    llm = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[tier],
            store=redis_server.url,
            key_prefix=prefix + "b:",
        )
    )
    # three windows at once, then the token reservation settled to the real usage
    assert await per_request(redis_server, llm, "/v1/chat/completions") == 2
    with_slot = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", requests="1000/second", concurrency=4)],
            store=redis_server.url,
            key_prefix=prefix + "c:",
        )
    )
    # the window and the slot together, then the slot's release
    assert await per_request(redis_server, with_slot, "/ping") == 2


def cluster_commands(cluster: RedisCluster) -> int:
    return sum(commands(node) for node in cluster.nodes)


@pytest.mark.cluster
async def test_a_request_costs_two_round_trips_on_redis_cluster(
    redis_cluster: RedisCluster, prefix: str, closing: Keep
) -> None:
    # every key of a request carries the caller's hash tag: each script runs on one node, and
    # no command goes to the others (the counts are summed over the three masters)
    tier = Tier("t", requests="1000/second;100000/minute", tokens="100000/minute", concurrency=4)
    app = closing(
        RateLimitMiddleware(
            Upstream().app(), tiers=[tier], store=redis_cluster.url, key_prefix=prefix
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        await http.post("/v1/chat/completions", json=chat_body(max_tokens=10))  # loads scripts
        before = cluster_commands(redis_cluster)
        for stream in [False, True] * 10:
            body = chat_body(max_tokens=10, stream=stream)
            response = await http.post("/v1/chat/completions", json=body)
            assert response.status_code == 200
            assert response.content  # a stream's usage is read as it passes
        sent = cluster_commands(redis_cluster) - before
    # answers streamed or not: the windows and the slot at once, then the tokens settled and
    # the slot released
    assert sent / 20 == 2
