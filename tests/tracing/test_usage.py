"""Token usage on the span, the token metrics and the access log, whatever the stack's order.

The rate limiter asks a stream for its usage chunk and removes it before the stream travels
outwards; it hands the usage it settled to the request's scope, where tracing finds it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from aimiddleware._asgi import ASGIApp
from aimiddleware._openai import LLMUsage, get_llm_usage, set_llm_usage
from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.ratelimit import RateLimitMiddleware, Tier
from aimiddleware.tracing import TracingMiddleware

from .apps import PROMPT_TOKENS, WORDS, call, chat_request, openai_like_app
from .conftest import Telemetry

pytestmark = pytest.mark.anyio

INPUT = "gen_ai.client.inference.operation.input_tokens"
OUTPUT = "gen_ai.client.inference.operation.output_tokens"


def limited(app: ASGIApp) -> RateLimitMiddleware:
    return RateLimitMiddleware(app, tiers=[Tier("t", tokens="100000/minute")])


def traced(app: ASGIApp, telemetry: Telemetry) -> TracingMiddleware:
    return TracingMiddleware(
        app,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        access_log="test.access",
    )


def sums(telemetry: Telemetry) -> tuple[int | None, int | None]:
    metrics = telemetry.histograms()
    found: list[int | None] = []
    for name in (INPUT, OUTPUT):
        points = metrics[name].data.data_points if name in metrics else []
        found.append(sum(p.sum for p in points) if points else None)
    return found[0], found[1]


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "test.access"]


STACKS = ["tracing outside the limiter", "tracing inside the limiter"]
REQUESTS = [
    pytest.param({"stream": False}, id="plain"),
    pytest.param({"stream": True}, id="streamed"),
    pytest.param(
        {"stream": True, "stream_options": {"include_usage": True}}, id="streamed-include_usage"
    ),
]


@pytest.mark.parametrize("order", STACKS)
@pytest.mark.parametrize("request_fields", REQUESTS)
async def test_usage_is_on_the_span_the_metrics_and_the_log_in_every_case(
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
    order: str,
    request_fields: dict[str, Any],
) -> None:
    if order == STACKS[0]:
        app: ASGIApp = traced(limited(openai_like_app()), telemetry)
    else:
        app = limited(traced(openai_like_app(), telemetry))
    body = chat_request(**request_fields)

    exchange = await call(app, "POST", "/v1/chat/completions", body=body)

    assert exchange.status == 200
    if request_fields["stream"] and "stream_options" not in request_fields:
        # the client gets the stream it asked for: the limiter removed the usage chunk
        assert b'"usage"' not in exchange.body
    attributes = dict(telemetry.span().attributes or {})
    assert attributes["gen_ai.usage.input_tokens"] == PROMPT_TOKENS
    assert attributes["gen_ai.usage.output_tokens"] == len(WORDS)
    assert "aimiddleware.tracing.usage_replayed" not in attributes
    assert sums(telemetry) == (PROMPT_TOKENS, len(WORDS))
    (line,) = access_lines(caplog)
    assert (line["input_tokens"], line["output_tokens"]) == (PROMPT_TOKENS, len(WORDS))
    assert line["usage_replayed"] is False


async def test_without_the_limiter_a_stream_without_usage_states_none(
    telemetry: Telemetry,
) -> None:
    # nothing settled any usage: none is estimated either
    app = traced(openai_like_app(), telemetry)

    await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=True))

    attributes = dict(telemetry.span().attributes or {})
    assert "gen_ai.usage.input_tokens" not in attributes
    assert "gen_ai.usage.output_tokens" not in attributes
    assert sums(telemetry) == (None, None)


async def test_the_usage_the_stream_states_wins_over_the_handed_one(telemetry: Telemetry) -> None:
    inner = openai_like_app()

    async def hands_other_usage(scope: Any, receive: Any, send: Any) -> None:
        set_llm_usage(scope, LLMUsage(1, 1))
        await inner(scope, receive, send)

    app = traced(hands_other_usage, telemetry)
    body = chat_request(stream=True, stream_options={"include_usage": True})

    await call(app, "POST", "/v1/chat/completions", body=body)

    attributes = dict(telemetry.span().attributes or {})
    assert attributes["gen_ai.usage.output_tokens"] == len(WORDS)


@pytest.mark.parametrize("limiter_inside", [True, False])
@pytest.mark.parametrize("request_fields", REQUESTS)
async def test_an_idempotent_replay_records_no_new_tokens_and_says_so(
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
    request_fields: dict[str, Any],
    limiter_inside: bool,
) -> None:
    if limiter_inside:
        stack: ASGIApp = IdempotencyMiddleware(limited(openai_like_app()), anonymous="shared")
    else:
        # the replay then passes through the limiter, which reads the usage it repeats
        stack = limited(IdempotencyMiddleware(openai_like_app(), anonymous="shared"))
    app = traced(stack, telemetry)
    body = chat_request(**request_fields)
    headers = [(b"idempotency-key", b"replay-me-1")]

    first = await call(app, "POST", "/v1/chat/completions", body=body, headers=headers)
    again = await call(app, "POST", "/v1/chat/completions", body=body, headers=headers)

    assert first.status == again.status == 200
    original, replay = sorted(telemetry.spans(), key=lambda s: s.start_time or 0)
    replayed = dict(replay.attributes or {})
    assert replayed["aimiddleware.idempotency.outcome"] == "replayed"
    assert replayed["aimiddleware.tracing.usage_replayed"] is True
    assert "gen_ai.usage.input_tokens" not in replayed
    assert "gen_ai.usage.output_tokens" not in replayed
    assert dict(original.attributes or {})["gen_ai.usage.output_tokens"] == len(WORDS)
    # the metrics counted the tokens once, for the request that produced them
    metrics = telemetry.histograms()
    (output_tokens,) = metrics[OUTPUT].data.data_points
    assert (output_tokens.count, output_tokens.sum) == (1, len(WORDS))
    lines = access_lines(caplog)
    assert [line["usage_replayed"] for line in lines] == [False, True]
    assert lines[1]["output_tokens"] is None


def test_the_usage_accessor_reads_only_what_was_handed_over() -> None:
    scope: dict[str, Any] = {}
    assert get_llm_usage(scope) is None
    scope["aimiddleware.llm_usage"] = {"input_tokens": 3}  # not the documented type
    assert get_llm_usage(scope) is None
    set_llm_usage(scope, LLMUsage(3, None))
    assert get_llm_usage(scope) == LLMUsage(3, None)


@pytest.fixture(autouse=True)
def _access_log_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.access")
