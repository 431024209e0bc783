"""Request, token and concurrency limits on every backend, with the headers and the 429 shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aimiddleware.ratelimit import ModelLimits, RateLimitMiddleware, Tier
from aimiddleware.ratelimit._headers import go_duration

from .apps import CHAT_PROMPT, SetPrincipal, Upstream, chat_body
from .conftest import Keep

pytestmark = pytest.mark.anyio


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_requests_limit_headers_and_429(store: str, prefix: str, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("human", requests="3/minute")],
            store=store,
            key_prefix=prefix,
        )
    )
    async with client(limited) as http:
        remaining = []
        for _ in range(3):
            response = await http.get("/ping")
            assert response.status_code == 200
            assert response.headers["ratelimit-policy"] == '"requests";q=3;w=60'
            remaining.append(response.headers["x-ratelimit-remaining-requests"])
            assert response.headers["x-ratelimit-limit-requests"] == "3"
        assert remaining == ["2", "1", "0"]
        rejected = await http.get("/ping")
    assert rejected.status_code == 429
    assert rejected.headers["content-type"] == "application/json"
    retry_after = int(rejected.headers["retry-after"])
    assert 1 <= retry_after <= 60
    state = rejected.headers["ratelimit"]
    assert state.startswith('"requests";r=0;t=')
    assert 0 <= int(state.rsplit("t=", 1)[1]) <= 60
    assert rejected.headers["x-ratelimit-remaining-requests"] == "0"
    assert rejected.headers["x-ratelimit-reset-requests"].endswith("s")
    error = rejected.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "requests"
    assert error["param"] is None
    assert "requests per 1m0s" in error["message"]


async def test_tiers_by_principal_and_default(store: str, prefix: str, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("agent", requests="5/minute"), Tier("human", requests="2/minute")],
            default_tier="human",
            store=store,
            key_prefix=prefix,
        )
    )
    app = SetPrincipal(limited)

    async def admitted(headers: dict[str, str]) -> int:
        async with client(app) as http:
            codes = [(await http.get("/ping", headers=headers)).status_code for _ in range(7)]
        return codes.count(200)

    assert await admitted({"x-test-principal": "bot-1:agent"}) == 5
    assert await admitted({"x-test-principal": "alice:human"}) == 2
    assert await admitted({"x-test-principal": "carol"}) == 2  # no tier claim: the default
    assert await admitted({}) == 2  # anonymous: the default tier, keyed by address
    # each principal has its own budget
    assert await admitted({"x-test-principal": "bot-2:agent"}) == 5


async def test_all_or_nothing_across_limits(store: str, prefix: str, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", requests="10/minute", tokens="100/minute")],
            store=store,
            key_prefix=prefix,
        )
    )
    async with client(limited) as http:
        # the prompt's 41 estimated tokens + 200 max_tokens = 241: more than the budget
        big = await http.post("/v1/chat/completions", json=chat_body(max_tokens=200))
        assert big.status_code == 429
        assert big.json()["error"]["type"] == "tokens"
        assert "Request too large" in big.json()["error"]["message"]
        # the request limit was not consumed by the rejected request
        small = await http.post("/v1/chat/completions", json=chat_body(max_tokens=10))
    assert small.status_code == 200
    assert small.headers["x-ratelimit-remaining-requests"] == "9"
    # no unregistered "qu": the token policy says its unit by its name (and x-ratelimit-*-tokens)
    assert small.headers["ratelimit-policy"] == '"requests";q=10;w=60, "tokens";q=100;w=60'
    assert small.headers["x-ratelimit-limit-tokens"] == "100"


async def test_retry_after_and_the_exhausted_policys_reset_agree(
    store: str, prefix: str, closing: Keep
) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 50, "total_tokens": 60}
    limited = closing(
        RateLimitMiddleware(
            Upstream(usage=usage).app(),
            tiers=[Tier("t", requests="10/minute", tokens="100/minute")],
            store=store,
            key_prefix=prefix,
        )
    )
    async with client(limited) as http:
        first = await http.post("/v1/chat/completions", json=chat_body(max_tokens=50))
        assert first.status_code == 200
        # 91 more tokens (the prompt's 41 and max_tokens) fit only once the sliding window has
        # let go of part of the first 60: later than the window's own reset
        rejected = await http.post("/v1/chat/completions", json=chat_body(max_tokens=50))
    assert rejected.status_code == 429
    assert rejected.json()["error"]["type"] == "tokens"
    retry_after = int(rejected.headers["retry-after"])
    items = dict(item.split(";", 1) for item in rejected.headers["ratelimit"].split(", "))
    tokens = dict(p.split("=") for p in items['"tokens"'].split(";"))
    requests = dict(p.split("=") for p in items['"requests"'].split(";"))
    assert int(tokens["t"]) == retry_after
    assert rejected.headers["x-ratelimit-reset-tokens"] == go_duration(retry_after)
    # the same window's reset alone (the requests policy's t) would have said a shorter wait
    assert int(requests["t"]) < retry_after


async def test_non_streamed_answer_is_charged_its_real_usage(
    store: str, prefix: str, closing: Keep
) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", tokens="1000/minute")],
            store=store,
            key_prefix=prefix,
        )
    )
    async with client(limited) as http:
        first = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90))
        # reserved the prompt's estimate + 90 = 131 before the call
        assert first.headers["x-ratelimit-remaining-tokens"] == str(1000 - CHAT_PROMPT - 90)
        second = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90))
    # the first was settled to its usage (19), so 1000 - 19 - 131 remain
    assert second.headers["x-ratelimit-remaining-tokens"] == str(1000 - 19 - (CHAT_PROMPT + 90))


async def test_n_choices_reserve_n_completions(prefix: str, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(), tiers=[Tier("t", tokens="1000/minute")], key_prefix=prefix
        )
    )
    async with client(limited) as http:
        first = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90, n=3))
    # reserved the prompt's 41 + 3 x 90 = 311 before the call: each choice may be max_tokens long
    assert first.headers["x-ratelimit-remaining-tokens"] == str(1000 - CHAT_PROMPT - 3 * 90)


async def test_failed_answer_is_refunded(store: str, prefix: str, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", tokens="1000/minute")],
            store=store,
            key_prefix=prefix,
        )
    )
    async with client(limited) as http:
        failed = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90, fail=True))
        assert failed.status_code == 500
        after = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90))
    # nothing was kept: only the second's reservation is out
    assert after.headers["x-ratelimit-remaining-tokens"] == str(1000 - (CHAT_PROMPT + 90))


async def test_per_model_limits_add_to_the_tier(store: str, prefix: str, closing: Keep) -> None:
    tier = Tier("t", requests="100/minute", models={"m": ModelLimits(requests="1/minute")})
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[tier],
            store=store,
            key_prefix=prefix,
        )
    )
    async with client(limited) as http:
        first = await http.post("/v1/chat/completions", json=chat_body())
        second = await http.post("/v1/chat/completions", json=chat_body())
        other = await http.post("/v1/chat/completions", json=chat_body(model="other"))
    assert first.status_code == 200
    assert '"m:requests";q=1;w=60' in first.headers["ratelimit-policy"]
    assert second.status_code == 429
    assert "m:requests" in second.json()["error"]["message"]
    assert other.status_code == 200


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window"])
async def test_other_strategies_limit_and_refund(
    store: str, prefix: str, closing: Keep, strategy: Any
) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", requests="2/minute", tokens="1000/minute")],
            store=store,
            key_prefix=prefix,
            strategy=strategy,
        )
    )
    async with client(limited) as http:
        first = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90))
        second = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90))
        third = await http.post("/v1/chat/completions", json=chat_body(max_tokens=90))
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
    assert second.headers["x-ratelimit-remaining-tokens"] == str(1000 - 19 - (CHAT_PROMPT + 90))
    assert third.json()["error"]["type"] == "requests"


async def test_overrides_apply_per_key_without_restart(
    store: str, prefix: str, closing: Keep
) -> None:
    special: dict[str, Tier] = {}

    async def provider(key: str) -> Tier | None:
        return special.get(key)

    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", requests="1/minute")],
            store=store,
            key_prefix=prefix,
            overrides=provider,
        )
    )
    app = SetPrincipal(limited)
    async with client(app) as http:
        headers = {"x-test-principal": "vip"}
        assert (await http.get("/ping", headers=headers)).status_code == 200
        assert (await http.get("/ping", headers=headers)).status_code == 429
        special["vip"] = Tier("vip", requests="5/minute")
        raised = await http.get("/ping", headers=headers)
    assert raised.status_code == 200
    assert raised.headers["x-ratelimit-limit-requests"] == "5"


async def test_sync_override_provider(prefix: str, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", requests="1/minute")],
            key_prefix=prefix,
            overrides=lambda key: Tier("x", requests="3/minute") if key == "ip:127.0.0.1" else None,
        )
    )
    async with client(limited) as http:
        codes = [(await http.get("/ping")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
