"""The Responses API: one span per response with the GenAI attributes it states, and the same
measurements as a chat."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aimiddleware.ratelimit import RateLimitMiddleware, Tier
from aimiddleware.tracing import TracingMiddleware
from testkit.openai_app import Counter
from testkit.responses_app import RESPONSES_PATH, response_events, responses_app

from .apps import call
from .conftest import Telemetry
from .test_usage import sums

pytestmark = pytest.mark.anyio


def responses_request(*, stream: bool) -> bytes:
    body = {
        "model": "m-requested",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}],
        "max_output_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "stream": stream,
    }
    return json.dumps(body).encode()


def traced(app: Any, telemetry: Telemetry) -> TracingMiddleware:
    return TracingMiddleware(
        app, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
async def test_a_response_is_one_chat_span_with_what_it_states(
    telemetry: Telemetry, stream: bool
) -> None:
    app = traced(responses_app(Counter(), usage=(21, 3)), telemetry)

    exchange = await call(app, "POST", RESPONSES_PATH, body=responses_request(stream=stream))

    assert exchange.status == 200
    span = telemetry.span()
    assert span.name == "POST /v1/responses"
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["openai.api.type"] == "responses"
    assert attributes["gen_ai.request.model"] == "m-requested"
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["gen_ai.request.temperature"] == 0.5
    # set only when the request streams, as the GenAI conventions say
    assert attributes.get("gen_ai.request.stream") is (True if stream else None)
    assert attributes["gen_ai.response.id"] == "resp_1"
    assert attributes["gen_ai.response.model"] == "test-model"
    assert attributes["gen_ai.response.finish_reasons"] == ("completed",)
    assert attributes["gen_ai.usage.input_tokens"] == 21
    assert attributes["gen_ai.usage.output_tokens"] == 3
    assert ("gen_ai.response.time_to_first_chunk" in attributes) is stream
    # the same measurements as a chat: tokens, duration, and for a stream the first token
    assert sums(telemetry) == (21, 3)
    metrics = telemetry.histograms()
    duration = metrics["gen_ai.server.request.duration"].data.data_points[0]
    assert duration.attributes["gen_ai.operation.name"] == "chat"
    assert ("gen_ai.server.time_to_first_token" in metrics) is stream


async def test_a_cut_response_states_why_as_its_finish_reason(telemetry: Telemetry) -> None:
    frames = response_events(["a", "b"], usage=(4, 2), incomplete="max_output_tokens")

    async def cut(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/event-stream")]})
        for frame in frames:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    await call(traced(cut, telemetry), "POST", RESPONSES_PATH, body=responses_request(stream=True))

    attributes = dict(telemetry.span().attributes or {})
    assert attributes["gen_ai.response.finish_reasons"] == ("max_output_tokens",)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (
        4,
        2,
    )


@pytest.mark.parametrize("outside", [True, False], ids=["outside", "inside"])
async def test_usage_is_the_same_behind_or_before_the_rate_limiter(
    telemetry: Telemetry, outside: bool
) -> None:
    # nothing is added to or removed from a Responses stream: both see the final usage
    def limited(app: Any) -> RateLimitMiddleware:
        return RateLimitMiddleware(app, tiers=[Tier("t", tokens="100000/minute")])

    app = responses_app(Counter(), usage=(9, 5))
    stack = traced(limited(app), telemetry) if outside else limited(traced(app, telemetry))

    exchange = await call(stack, "POST", RESPONSES_PATH, body=responses_request(stream=True))

    assert exchange.body == b"".join(response_events(["Hel", "lo", "!"], id="resp_1", usage=(9, 5)))
    attributes = dict(telemetry.span().attributes or {})
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (
        9,
        5,
    )


async def test_reading_a_stored_response_is_no_inference(telemetry: Telemetry) -> None:
    async def stored(scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"id": "resp_1"}'})

    await call(traced(stored, telemetry), "GET", RESPONSES_PATH + "/resp_1")

    attributes = dict(telemetry.span().attributes or {})
    assert "gen_ai.operation.name" not in attributes
    assert "openai.api.type" not in attributes
