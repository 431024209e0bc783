"""Rate limits through the reference app, with the real model and the openai SDK."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from reference_app import Settings
from reference_app.auth import mint

from ..servers import ThreadedServer
from .conftest import LONG_SCHEMA, MODEL, serve_reference

pytestmark = [pytest.mark.model, pytest.mark.e2e]

# Request limits here are per hour: the sliding window counter lets the previous window's
# count decay right after a boundary, so a per-minute burst that straddles one is not exact.

PROMPT = "Name one colour."
# the limiter's estimate: prompt characters / 4, 6 for the one message and 25 for the request
# (the chat template's, by default), plus max_tokens
MAX_TOKENS = 8
ESTIMATE = math.ceil(len(PROMPT) / 4) + 6 + 25 + MAX_TOKENS


def sdk(server: ThreadedServer, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="none", max_retries=0, default_headers=headers
    )


def ask(client: openai.OpenAI, **extra: Any) -> Any:
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=MAX_TOKENS,
        temperature=0,
        seed=1,
        **extra,
    )


def admitted(client: openai.OpenAI, attempts: int) -> tuple[int, openai.RateLimitError | None]:
    """How many of ``attempts`` calls pass before the first RateLimitError (and that error)."""
    for n in range(attempts):
        try:
            ask(client)
        except openai.RateLimitError as exc:
            return n, exc
    return attempts, None


@pytest.fixture(scope="module")
def tiered() -> Iterator[ThreadedServer]:
    with serve_reference(
        agent_requests="4/hour",
        human_requests="2/hour",
        human_tokens="40000/minute",  # the demo default
        client_type_header="X-Client-Type",
        client_type_trusted_from=["127.0.0.1"],  # the test client is the trusted gateway
    ) as server:
        yield server


def test_agent_and_human_tiers_get_their_own_limits(tiered: ThreadedServer) -> None:
    with sdk(tiered, **{"X-Client-Type": "agent"}) as agent, sdk(tiered) as human:
        assert admitted(agent, 6)[0] == 4
        passed, error = admitted(human, 4)
    assert passed == 2
    # the SDK raised RateLimitError from an OpenAI-shaped body that says which limit
    assert error is not None
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    headers = error.response.headers
    assert 1 <= int(headers["retry-after"]) <= 3600
    assert headers["ratelimit-policy"].startswith('"requests";q=2;w=3600')
    assert headers["ratelimit"].startswith('"requests";r=0;t=')
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert headers["x-ratelimit-limit-tokens"] == "40000"


def test_header_tier_only_from_trusted_configuration() -> None:
    agent = {"X-Client-Type": "agent"}
    # without a configured header, the claim is ignored: the caller is anonymous (human)
    with (
        serve_reference(agent_requests="4/hour", human_requests="2/hour") as server,
        sdk(server, **agent) as client,
    ):
        assert admitted(client, 4)[0] == 2
    # configured, but only from a gateway the test client is not
    with (
        serve_reference(
            agent_requests="4/hour",
            human_requests="2/hour",
            client_type_header="X-Client-Type",
            client_type_trusted_from=["10.0.0.0/8"],
        ) as server,
        sdk(server, **agent) as client,
    ):
        assert admitted(client, 4)[0] == 2


def test_tokens_are_charged_the_real_usage_of_streamed_and_plain_answers() -> None:
    budget = 100_000
    with serve_reference(human_tokens=f"{budget}/minute") as server, sdk(server) as client:
        plain = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=MAX_TOKENS,
            temperature=0,
            seed=1,
        )
        assert plain.headers["x-ratelimit-remaining-tokens"] == str(budget - ESTIMATE)
        usage = plain.parse().usage.total_tokens
        assert usage > 0

        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=MAX_TOKENS,
            temperature=0,
            seed=1,
            stream=True,
        )
        assert raw.headers["x-ratelimit-remaining-tokens"] == str(budget - usage - ESTIMATE)
        chunks = list(raw.parse())
        # the client did not ask for usage, so it sees no usage chunk (the limiter did)
        assert chunks
        assert all(c.usage is None and c.choices for c in chunks)

        # at temperature 0 the streamed answer used exactly what the plain one did
        third = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=MAX_TOKENS,
            temperature=0,
            seed=1,
        )
    assert third.headers["x-ratelimit-remaining-tokens"] == str(budget - 2 * usage - ESTIMATE)


def test_token_budget_rejects_with_rate_limit_error() -> None:
    with serve_reference(human_tokens=f"{ESTIMATE}/minute") as server, sdk(server) as client:
        ask(client)
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client)
    assert caught.value.type == "tokens"
    assert "tokens per 1m0s" in caught.value.message


def test_spend_budget_prices_the_real_usage_and_refuses_with_insufficient_quota(
    tmp_path: Path,
) -> None:
    # a price table from a file: 1,000 EUR a million prompt tokens, 2,000 a million completion
    # tokens (a thousandth and two thousandths a token), and no price for any other model
    table = {"currency": "EUR", "models": {MODEL: {"input": 1000, "output": 2000}}}
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(table))
    per_prompt, per_completion = Decimal("0.001"), Decimal("0.002")
    reserve = (ESTIMATE - MAX_TOKENS) * per_prompt + MAX_TOKENS * per_completion
    with (
        serve_reference(prices=prices, human_budget="0.5/day") as server,
        sdk(server) as client,
    ):
        first = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=MAX_TOKENS,
            temperature=0,
            seed=1,
        )
        assert first.headers["x-budget-limit-day"] == "0.5"
        # written at admission: the worst case is reserved
        assert Decimal(first.headers["x-budget-remaining-day"]) == Decimal("0.5") - reserve
        usage = first.parse().usage
        assert usage is not None
        cost = usage.prompt_tokens * per_prompt + usage.completion_tokens * per_completion
        second = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=MAX_TOKENS,
            temperature=0,
            seed=1,
            stream=True,
        )
        # the first was settled to what the model really used
        assert Decimal(second.headers["x-budget-remaining-day"]) == Decimal("0.5") - cost - reserve
        assert list(second.parse())

        with pytest.raises(openai.BadRequestError) as unpriced:
            client.chat.completions.create(
                model="another-model", messages=[{"role": "user", "content": PROMPT}]
            )
        assert unpriced.value.code == "model_not_priced"

        passed, error = admitted(client, 40)
    assert 1 <= passed < 40
    assert error is not None
    assert error.code == "insufficient_quota"
    assert "day spend budget of 0.5 EUR" in error.message
    assert error.response.headers["x-should-retry"] == "false"


def test_disconnected_stream_releases_its_slot_at_once() -> None:
    with serve_reference(human_concurrency=1) as server, sdk(server) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "List numbers."}],
            max_tokens=1500,
            stream=True,
            response_format=LONG_SCHEMA,  # type: ignore[arg-type] # seconds of generation
        )
        chunks = iter(stream)
        next(chunks)  # the stream is running and holds the only slot
        with pytest.raises(openai.RateLimitError) as busy:
            ask(client)
        assert busy.value.type == "concurrency"
        next(chunks)  # still running
        stream.close()  # the client goes away mid-stream
        # the slot comes back without waiting for the model to finish
        deadline = time.monotonic() + 2.0
        while True:
            try:
                answer = ask(client)
                break
            except openai.RateLimitError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    assert answer.choices[0].message.content is not None


def test_tier_from_the_token_claim_with_auth_on(tmp_path: Path) -> None:
    settings = {
        "auth": True,
        "auth_key_file": tmp_path / "issuer-key.json",
        "agent_requests": "4/hour",
        "human_requests": "2/hour",
        # a header claim means nothing once callers authenticate, even from a trusted peer
        "client_type_header": "X-Client-Type",
        "client_type_trusted_from": ["127.0.0.1"],
    }
    with serve_reference(**settings) as server:
        issuer = Settings(**settings, port=server.port)
        agent = mint(issuer, scope="chat", tier="agent", client_id="bot-1")
        human = mint(issuer, scope="chat", tier="human", client_id="alice")
        unclaimed = mint(issuer, scope="chat", client_id="carol")

        def client(token: str, **headers: str) -> openai.OpenAI:
            return openai.OpenAI(
                base_url=f"{server.url}/v1", api_key=token, max_retries=0, default_headers=headers
            )

        with (
            client(agent) as a,
            client(human) as h,
            client(unclaimed, **{"X-Client-Type": "agent"}) as u,
        ):
            assert admitted(a, 6)[0] == 4
            assert admitted(h, 4)[0] == 2
            # no tier claim: the anonymous tier, whatever header the caller adds
            assert admitted(u, 4)[0] == 2


def test_idempotent_replays_cost_no_budget() -> None:
    with serve_reference(human_requests="2/hour") as server, sdk(server) as client:
        first = ask(client, extra_headers={"Idempotency-Key": "order-1"})
        # the same key again is answered by the idempotency middleware: the limiter never sees it
        again = ask(client, extra_headers={"Idempotency-Key": "order-1"})
        assert again.id == first.id
        ask(client, extra_headers={"Idempotency-Key": "order-2"})
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client, extra_headers={"Idempotency-Key": "order-3"})
    assert caught.value.type == "requests"
