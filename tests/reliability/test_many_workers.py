"""Many workers on one Redis: ``python -m reference_app serve --workers N --redis-url ...``.

Proves, across processes that share nothing but Redis: N concurrent requests with K
idempotency keys run exactly K times (counted from the idempotency outcome: a 200 without
``Idempotent-Replayed`` is an execution; every key's responses carry one response id), and a
request limit admits exactly its quota, no overshoot; a token budget spent by concurrent
callers on every worker is never overshot when no reservation is too small, and the tokens the
limiter charged equal the usage the callers were answered with, to the token.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from ..processes import ServerProcess, serving_process
from ..reference_app.conftest import healthy_pid
from ..servers import RedisCluster, running_redis
from .conftest import Reporter, scale
from .stack import chat

pytestmark = [pytest.mark.model, pytest.mark.e2e, pytest.mark.redis, pytest.mark.cluster]

WORKERS = scale(2, 4)
REQUESTS = scale(60, 500)
KEYS = scale(6, 50)
QUOTA = scale(20, 100)
# Seconds a Redis call may take. In the full size, 500 requests arriving at once on 4 workers
# that share this machine's 2 cores with Redis (3 processes for the Cluster) and the client make
# Cluster answers take up to about 0.8 s: past the default 0.5 s, calls fail open, as documented.
STORE_TIMEOUT = scale("0.5", "2")


@pytest.fixture(params=["redis", "cluster"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh redis-server, or the session's 3-node Cluster emptied first: the limiter counts
    the loopback address, which other tests on the Cluster may have counted already."""
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        for node in cluster.nodes:
            node.cli("flushall")
        yield cluster.url
        return
    with running_redis() as server:
        yield server.url


@contextmanager
def serving(store_url: str, **env: str) -> Iterator[str]:
    environment = {
        **os.environ,
        "AIMW_AUTH": "0",
        "AIMW_HUMAN_CONCURRENCY": "1000",
        "AIMW_MAX_QUEUE": str(REQUESTS),
        "AIMW_LOG_LEVEL": "warning",
        "AIMW_STORE_TIMEOUT": STORE_TIMEOUT,
        **env,
    }
    command = [sys.executable, "-m", "reference_app", "serve", "--workers", str(WORKERS)]

    workers: set[int] = set()

    def ready(server: ServerProcess) -> bool:
        # each worker loads its own model; a new connection may reach any of them
        pid = healthy_pid(server.url, owner=server.owns)
        if pid is not None:
            workers.add(pid)
        return len(workers) >= WORKERS

    with serving_process(
        [*command, "--redis-url", store_url], env=environment, ready=ready, timeout=180
    ) as server:
        yield server.url


@pytest.fixture
def served(store_url: str) -> Iterator[str]:
    with serving(
        store_url,
        AIMW_HUMAN_REQUESTS=f"{QUOTA}/hour",
        AIMW_HUMAN_TOKENS="1000000000/minute",
    ) as url:
        yield url


async def keyed(client: httpx.AsyncClient, index: int) -> tuple[str, bool, str, bool, bool]:
    key = f"mw-{index % KEYS}"
    for _ in range(120):
        response = await client.post(
            "/v1/chat/completions",
            json=chat(max_tokens=1, content=f"Say {index % KEYS}."),
            headers={"idempotency-key": key, "authorization": "Bearer caller-1"},
        )
        if response.status_code != 409:
            break
        # the key's first request still runs: come back when the 409 says, as the openai SDK
        # does (polling faster only spends the CPU the first requests need)
        await asyncio.sleep(float(response.headers["retry-after"]))
    assert response.status_code == 200, response.text
    replayed = response.headers.get("idempotent-replayed") == "true"
    fell_open = response.headers.get("idempotency-applied") == "false"
    # an execution the limiter let through because its store did not answer in time (its
    # documented fail-open) carries no RateLimit fields, and was not counted
    uncounted = not replayed and "ratelimit" not in response.headers
    return key, replayed, response.json()["id"], fell_open, uncounted


def test_k_keys_run_exactly_k_times_and_limits_are_exact(served: str, report: Reporter) -> None:
    async def run() -> tuple[list[tuple[str, bool, str, bool, bool]], list[httpx.Response]]:
        limits = httpx.Limits(max_connections=REQUESTS)
        async with httpx.AsyncClient(base_url=served, timeout=120, limits=limits) as client:
            results = await asyncio.gather(*(keyed(client, i) for i in range(REQUESTS)))
            statuses = await asyncio.gather(
                *(
                    client.get("/v1/models", headers={"authorization": "Bearer caller-2"})
                    for _ in range(QUOTA * 2)
                )
            )
        return list(results), list(statuses)

    results, answers = asyncio.run(run())
    statuses = [answer.status_code for answer in answers]
    executions = sum(1 for _, replayed, *_ in results if not replayed)
    ids = {key: {rid for k, _, rid, *_ in results if k == key} for key, *_ in results}
    uncounted_executions = sum(1 for *_, uncounted in results if uncounted)
    admitted = [a for a in answers if a.status_code == 200 and "ratelimit" in a.headers]
    admitted_uncounted = sum(1 for a in answers if a.status_code == 200) - len(admitted)
    report("workers", WORKERS)
    report("store timeout", STORE_TIMEOUT, "s")
    report("requests", REQUESTS)
    report("keys", KEYS)
    report("executions", executions)
    report("answers served without idempotency (store fault)", sum(r[3] for r in results))
    report("executions the limiter let through uncounted (store fault)", uncounted_executions)
    report("request quota", QUOTA)
    report("admitted of twice the quota, after the executions", len(admitted))
    report("admitted uncounted (store fault)", admitted_uncounted)
    assert executions == KEYS
    assert all(len(found) == 1 for found in ids.values())
    # without auth the limiter counts callers by address: the K executions above already
    # spent K of the loopback's quota (replays and 409s never reach the limiter), less any the
    # limiter failed open on; what it counted is exact
    spent = KEYS - uncounted_executions
    assert len(admitted) == QUOTA - spent
    assert statuses.count(429) == 2 * QUOTA - len(admitted) - admitted_uncounted


# -- token budgets -----------------------------------------------------------------------------

BUDGET = scale(2_500, 12_000)
CALLERS = WORKERS * 3
# 800 "=" are ~12 tokens to SmolLM2's tokenizer but 200 to the limiter's estimate (characters /
# 4), plus 6 for the message and 25 for the request (the chat template's, ~31 tokens to SmolLM2):
# every reservation (231 + max_tokens) is larger than its request's real usage, so the limiter
# settles each one down, never up
PADDED = "=" * 800
MAX_TOKENS = 8


async def spend(client: httpx.AsyncClient) -> tuple[list[int], httpx.Response]:
    """Chat until the token budget refuses; the usage of each answer, and the refusal."""
    used = []
    while True:
        response = await client.post(
            "/v1/chat/completions", json=chat(max_tokens=MAX_TOKENS, content=PADDED)
        )
        if response.status_code == 429:
            return used, response
        assert response.status_code == 200, response.text
        used.append(response.json()["usage"]["total_tokens"])


def test_token_budget_across_workers_is_never_overshot(store_url: str, report: Reporter) -> None:
    async def run() -> tuple[list[tuple[list[int], httpx.Response]], httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            spent = await asyncio.gather(*(spend(client) for _ in range(CALLERS)))
            # every answer is settled by now: what the limiter says is left is final
            final = await client.post(
                "/v1/chat/completions", json=chat(max_tokens=MAX_TOKENS, content=PADDED)
            )
        return list(spent), final

    with serving(
        store_url,
        AIMW_HUMAN_REQUESTS="1000000/hour",
        AIMW_HUMAN_TOKENS=f"{BUDGET}/hour",
    ) as url:
        spent, final = asyncio.run(run())
    usages = [u for used, _ in spent for u in used]
    refusals = [refusal for _, refusal in spent] + [final]
    assert all(r.json()["error"]["type"] == "tokens" for r in refusals)
    # the limiter's own figures, from its 429: what one request reserves, what is left
    reservation = int(re.search(r"requested (\d+)", final.json()["error"]["message"])[1])
    remaining = int(final.headers["x-ratelimit-remaining-tokens"])
    charged = BUDGET - remaining
    overshoot = sum(usages) - BUDGET
    report("workers", WORKERS)
    report("concurrent callers", CALLERS)
    report("token budget", BUDGET)
    report("reservation per request", reservation, "tokens")
    report("admitted requests", len(usages))
    report("usage of the admitted requests", sum(usages), "tokens")
    report("charged by the limiter", charged, "tokens")
    report("overshoot", overshoot, "tokens")
    assert reservation == len(PADDED) // 4 + 6 + 25 + MAX_TOKENS
    assert usages
    assert max(usages) < reservation  # no reservation too small: settlement only refunds
    # every admission checked the shared budget atomically: no overshoot at all, which is
    # within the promised bound of one reservation
    assert overshoot <= 0 < reservation
    # settlement across the workers is exact: the limiter charged what the callers were told
    assert charged == sum(usages)
    # and the budget is spent: what is left is less than one more request
    assert remaining < reservation
