"""Spend budgets: reserved at the worst case before the app runs, settled to the real usage,
never overshot by concurrent requests, on memory, Redis and the Cluster."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest

from aimiddleware.ratelimit import Budget, Price, PriceTable, RateLimitMiddleware, Tier

from .apps import SetPrincipal, Upstream, chat_body
from .conftest import Keep

pytestmark = pytest.mark.anyio

# 1 and 2 currency units per million tokens: 1,000 and 2,000 nano-units a token
PRICES = PriceTable({"m": Price(input=1, output=2)})
# what Upstream's usage (12 prompt, 7 completion tokens) costs
ACTUAL = Decimal(12 * 1000 + 7 * 2000) / 10**9


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def budgeted(
    upstream: Upstream, store: str, prefix: str, *budgets: Budget, **tier: Any
) -> RateLimitMiddleware:
    return RateLimitMiddleware(
        upstream.app(),
        tiers=[Tier("t", budgets=budgets, **tier)],
        store=store,
        key_prefix=prefix,
        prices=PRICES,
        timeout=5.0,  # 200 concurrent requests on a loaded machine: no fail-open by timeout
    )


def remaining(response: httpx.Response, name: str = "day") -> Decimal:
    return Decimal(response.headers[f"x-budget-remaining-{name}"])


async def reservation(max_tokens: int) -> Decimal:
    """What one ``chat_body(max_tokens=...)`` reserves: a fresh budget less its first answer's
    remaining (the fields are written as the request is admitted, before it settles)."""
    probe = budgeted(Upstream(), "memory://", "probe:", Budget(1000, "day"))
    async with client(probe) as http:
        first = await http.post("/v1/chat/completions", json=chat_body(max_tokens=max_tokens))
    assert first.status_code == 200
    return 1000 - remaining(first)


async def test_reserved_at_the_worst_case_and_settled_to_the_usage(
    store: str, prefix: str, closing: Keep
) -> None:
    limited = closing(budgeted(Upstream(), store, prefix, Budget(1, "day")))
    reserved = await reservation(90)
    # the worst case prices every reserved completion token at the output price: 90 of them
    assert reserved >= Decimal(90 * 2000) / 10**9
    async with client(limited) as http:
        first = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90))
        second = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90))
    assert first.status_code == second.status_code == 200
    assert first.headers["x-budget-limit-day"] == "1"
    assert remaining(first) == 1 - reserved
    # the first was settled to its usage before the second was admitted
    assert remaining(second) == 1 - ACTUAL - reserved
    assert re.fullmatch(r"(\d+h)?(\d+m)?[\d.]+m?s", first.headers["x-budget-reset-day"])


async def test_an_exhausted_budget_is_insufficient_quota_and_not_retried(
    store: str, prefix: str, closing: Keep
) -> None:
    reserved = await reservation(90)
    # room for one worst case, and one nano-unit short of a second after it settles
    nano = Decimal("0.000000001")
    limited = closing(
        budgeted(Upstream(), store, prefix, Budget(reserved + ACTUAL - nano, "month"))
    )
    async with client(limited) as http:
        assert (await http.post("/v1/chat/completions", json=chat_body(max_tokens=90))).is_success
        refused = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90))
        smaller = await http.post("/v1/chat/completions", json=chat_body(max_tokens=1))
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "insufficient_quota"
    assert error["type"] == "insufficient_quota"
    assert "month spend budget of" in error["message"]
    assert "USD" in error["message"]
    assert refused.headers["x-should-retry"] == "false"
    # Retry-After names the start of the next UTC month
    now = datetime.now(UTC)
    start = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    wait = int(refused.headers["retry-after"])
    assert abs(wait - (start - now).total_seconds()) <= 5
    assert remaining(refused, "month") == reserved - nano
    # what is left still pays for a request whose worst case fits
    assert smaller.status_code == 200


@pytest.mark.parametrize("per", ["caller", "tier"])
async def test_200_concurrent_requests_never_overshoot(
    store: str, prefix: str, closing: Keep, per: str
) -> None:
    reserved = await reservation(90)
    upstream = Upstream()
    upstream.gate = asyncio.Event()  # every admitted request holds its reservation meanwhile
    fits = 7
    budget = Budget(reserved * fits + reserved / 2, "day", per=per)  # type: ignore[arg-type]
    limited = closing(budgeted(upstream, store, prefix, budget, requests="1000/minute"))
    app = SetPrincipal(limited)
    name = budget.name
    async with client(app) as http:

        async def one(n: int) -> httpx.Response:
            # a tier-wide budget is shared by ten callers; a caller's budget by one
            who = f"c{n % 10}" if per == "tier" else "c0"
            return await http.post(
                "/v1/chat/completions",
                json=chat_body(max_tokens=90),
                headers={"x-test-principal": who},
            )

        settled = asyncio.Event()
        done: list[asyncio.Task[httpx.Response]] = []

        def finished(task: asyncio.Task[httpx.Response]) -> None:
            done.append(task)
            if len(done) == 200 - fits:
                settled.set()

        tasks = [asyncio.create_task(one(n)) for n in range(200)]
        for task in tasks:
            task.add_done_callback(finished)
        # every other request is refused while the admitted ones hold their reservations
        with anyio.fail_after(60):
            await settled.wait()
        assert len(upstream.bodies) == fits
        upstream.gate.set()
        answers = await asyncio.gather(*tasks)
        after = await http.post(
            "/v1/chat/completions",
            json=chat_body(max_tokens=1),
            headers={"x-test-principal": "c0"},
        )
    codes = [a.status_code for a in answers]
    assert codes.count(200) == fits
    assert codes.count(429) == 200 - fits
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 429} == {
        "insufficient_quota"
    }
    # settled exactly: the budget less seven real costs, less the last request's reservation
    assert remaining(after, name) == budget.amount - fits * ACTUAL - await reservation(1)
    # a refused request holds none of the caller's own limits (on Redis, a tier-wide budget's
    # refusal gives back what the caller's script had charged)
    admitted = sum(1 for n, a in enumerate(answers) if a.status_code == 200 and n % 10 == 0)
    if per == "caller":
        admitted = fits
    assert after.headers["x-ratelimit-remaining-requests"] == str(1000 - admitted - 1)


async def test_a_tier_budget_is_shared_by_every_caller_of_the_tier(
    store: str, prefix: str, closing: Keep
) -> None:
    reserved = await reservation(90)
    nano = Decimal("0.000000001")
    budget = Budget(reserved + ACTUAL - nano, "day", per="tier")
    app = SetPrincipal(closing(budgeted(Upstream(), store, prefix, budget)))
    async with client(app) as http:
        first = await http.post(
            "/v1/chat/completions", json=chat_body(max_tokens=90), headers={"x-test-principal": "a"}
        )
        other = await http.post(
            "/v1/chat/completions", json=chat_body(max_tokens=90), headers={"x-test-principal": "b"}
        )
    assert first.status_code == 200
    assert other.status_code == 429
    assert "this tier's day spend budget" in other.json()["error"]["message"]
    assert remaining(other, "tier-day") == reserved - nano


async def test_alerts_are_said_once_per_period_across_workers(
    store: str, prefix: str, closing: Keep, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    import aimiddleware.ratelimit._alerts as alerts

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    counter = provider.get_meter("aimiddleware").create_counter(
        "aimiddleware.ratelimit.budget.alerts"
    )
    patch = pytest.MonkeyPatch()
    patch.setattr(alerts, "_counter", counter)
    # each request really costs ACTUAL: the 10th reaches half the budget, the 18th 90% (and
    # each is admitted: its reservation still fits)
    budget = Budget(ACTUAL * 20, "day")

    def worker() -> RateLimitMiddleware:
        return closing(
            RateLimitMiddleware(
                Upstream().app(),
                tiers=[Tier("t", budgets=[budget])],
                store=store,
                key_prefix=prefix,
                prices=PRICES,
                budget_alerts=[0.5, 0.9],
            )
        )

    # two workers on one store: the budget's record remembers what was said (a memory store
    # is one process's: one worker)
    first = worker()
    workers = [client(first), client(first if store == "memory://" else worker())]
    try:
        with caplog.at_level(logging.WARNING, logger="aimiddleware.ratelimit"):
            for n in range(18):
                answer = await workers[n % 2].post(
                    "/v1/chat/completions", json=chat_body(max_tokens=7)
                )
                assert answer.status_code == 200, answer.text
    finally:
        for http in workers:
            await http.aclose()
        patch.undo()
    said = [r.getMessage() for r in caplog.records if "spend budget" in r.getMessage()]
    assert said == [
        "spend budget: caller 'ip:127.0.0.1' (tier 't') reached 50% of its day budget of "
        f"{budget.amount} USD",
        "spend budget: caller 'ip:127.0.0.1' (tier 't') reached 90% of its day budget of "
        f"{budget.amount} USD",
    ]
    data = reader.get_metrics_data()
    assert data is not None
    points = [
        (dict(p.attributes or {}), p.value)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "aimiddleware.ratelimit.budget.alerts"
        for p in m.data.data_points
    ]
    assert sorted(points, key=lambda p: str(p[0]["threshold"])) == [
        ({"tier": "t", "budget": "day", "threshold": 0.5}, 1),
        ({"tier": "t", "budget": "day", "threshold": 0.9}, 1),
    ]
    provider.shutdown()


async def test_a_model_without_a_price_is_refused(prefix: str, closing: Keep) -> None:
    limited = closing(budgeted(Upstream(), "memory://", prefix, Budget(1, "day")))
    async with client(limited) as http:
        answer = await http.post("/v1/chat/completions", json={**chat_body(), "model": "other"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "model_not_priced"
    assert error["param"] == "model"
    assert "'other'" in error["message"]


async def test_the_default_price_covers_other_models(prefix: str, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", budgets=[Budget(1, "day")])],
            key_prefix=prefix,
            prices=PriceTable({"*": Price(input=1, output=2)}),
        )
    )
    async with client(limited) as http:
        answer = await http.post("/v1/chat/completions", json={**chat_body(), "model": "other"})
    assert answer.status_code == 200


async def test_cached_prompt_tokens_are_priced_as_cached_input(prefix: str, closing: Keep) -> None:
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 10},
    }
    limited = closing(
        RateLimitMiddleware(
            Upstream(usage=usage).app(),
            tiers=[Tier("t", budgets=[Budget(1, "day")])],
            key_prefix=prefix,
            prices=PriceTable({"m": Price(input=1, output=2, cached_input="0.5")}),
        )
    )
    reserved = await reservation(90)
    async with client(limited) as http:
        for stream in (False, True):
            await http.post("/v1/chat/completions", json=chat_body(max_tokens=90, stream=stream))
        after = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90))
    # 2 uncached at 1,000, 10 cached at 500, 7 out at 2,000 nano-units: twice
    cost = Decimal(2 * 1000 + 10 * 500 + 7 * 2000) / 10**9
    assert remaining(after) == 1 - 2 * cost - reserved


async def test_a_stream_settles_to_its_usage_and_a_cut_stream_to_what_went_out(
    store: str, prefix: str, closing: Keep
) -> None:
    reserved = await reservation(90)
    upstream = Upstream(tokens=5)
    limited = closing(budgeted(upstream, store, prefix, Budget(1, "day")))
    async with client(limited) as http:
        async with http.stream(
            "POST", "/v1/chat/completions", json=chat_body(max_tokens=90, stream=True)
        ) as streamed:
            await streamed.aread()
        between = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90))
    assert remaining(between) == 1 - ACTUAL - reserved


def test_a_budget_without_prices_is_refused() -> None:
    from aimiddleware import ConfigurationError

    with pytest.raises(ConfigurationError, match="prices=PriceTable"):
        RateLimitMiddleware(Upstream().app(), tiers=[Tier("t", budgets=[Budget(1, "day")])])
    with pytest.raises(ConfigurationError, match="decimal places"):
        Price(input="0.0000001", output=1)
    with pytest.raises(ConfigurationError, match="same period"):
        Tier("t", budgets=[Budget(1, "day"), Budget(2, "day")])
    with pytest.raises(ConfigurationError, match="at most"):
        Budget(10**8, "month")
    with pytest.raises(ConfigurationError, match="budget_alerts"):
        RateLimitMiddleware(Upstream().app(), tiers=[Tier("t")], budget_alerts=[1.5])


def test_period_bounds_are_utc_days_and_months() -> None:
    from aimiddleware.ratelimit._budgets import period_bounds

    def ms(text: str) -> int:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)

    assert period_bounds(ms("2024-02-29T23:59:59.999"), 2)[1:] == (
        ms("2024-02-01T00:00:00"),
        ms("2024-03-01T00:00:00"),
    )
    assert period_bounds(ms("2026-12-31T12:00:00"), 2)[1:] == (
        ms("2026-12-01T00:00:00"),
        ms("2027-01-01T00:00:00"),
    )
    assert period_bounds(ms("2026-12-31T12:00:00"), 1)[1:] == (
        ms("2026-12-31T00:00:00"),
        ms("2027-01-01T00:00:00"),
    )


@pytest.mark.redis
async def test_the_scripts_calendar_is_pythons(redis_server: Any) -> None:
    import redis.asyncio as redis

    from aimiddleware.ratelimit._budgets import period_bounds
    from aimiddleware.ratelimit._scripts import PERIOD

    script = PERIOD + "return {period(tonumber(ARGV[1]), tonumber(ARGV[2]))}"
    moments = [datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=d) for d in range(0, 40000, 29)]
    moments += [datetime(y, m, 1, tzinfo=UTC) for y in (2000, 2024, 2100) for m in range(1, 13)]
    checked = 0
    async with redis.from_url(redis_server.url) as client:
        for moment in moments:
            for offset in (-1, 0, 1):
                now = int(moment.timestamp() * 1000) + offset
                for code in (1, 2):
                    found = await client.eval(script, 0, now, code)  # type: ignore[misc]
                    assert tuple(int(v) for v in found) == period_bounds(now, code), moment
                    checked += 1
    assert checked > 8000
