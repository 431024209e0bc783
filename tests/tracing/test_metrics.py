from __future__ import annotations

import pytest

from aimiddleware.tracing import TracingMiddleware

from .apps import MODEL, WORDS, call, chat_app, chat_request
from .conftest import Telemetry

pytestmark = pytest.mark.anyio

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
LLM_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
TTFT_BUCKETS += (7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
TOKEN_BUCKETS += (16777216, 67108864)


async def test_http_and_genai_metrics_follow_the_conventions(telemetry: Telemetry) -> None:
    app = TracingMiddleware(
        chat_app(delay=0.005),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=True))
    await call(app, "GET", "/v1/items/5")

    metrics = telemetry.histograms()
    expected = {
        "http.server.request.duration": ("s", HTTP_BUCKETS),
        "gen_ai.server.request.duration": ("s", LLM_BUCKETS),
        "gen_ai.server.time_to_first_token": ("s", TTFT_BUCKETS),
        "gen_ai.server.time_per_output_token": ("s", TPOT_BUCKETS),
        "gen_ai.client.inference.operation.input_tokens": ("{token}", TOKEN_BUCKETS),
        "gen_ai.client.inference.operation.output_tokens": ("{token}", TOKEN_BUCKETS),
    }
    assert set(expected) <= set(metrics)
    for name, (unit, buckets) in expected.items():
        metric = metrics[name]
        assert metric.unit == unit, name
        for point in metric.data.data_points:
            assert tuple(point.explicit_bounds) == buckets, name

    http = {
        p.attributes["http.route"]: p
        for p in metrics["http.server.request.duration"].data.data_points
    }
    assert set(http) == {"/v1/chat/completions", "/v1/items/{item_id}"}
    chat = dict(http["/v1/chat/completions"].attributes)
    assert chat == {
        "http.request.method": "POST",
        "http.route": "/v1/chat/completions",
        "http.response.status_code": 200,
        "url.scheme": "https",
        "network.protocol.version": "1.1",
    }

    (llm,) = metrics["gen_ai.server.request.duration"].data.data_points
    assert dict(llm.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
    }
    assert llm.count == 1
    (ttft,) = metrics["gen_ai.server.time_to_first_token"].data.data_points
    assert ttft.count == 1
    assert 0.005 <= ttft.sum < llm.sum
    (tpot,) = metrics["gen_ai.server.time_per_output_token"].data.data_points
    assert tpot.count == 1
    assert tpot.sum == pytest.approx((llm.sum - ttft.sum) / (len(WORDS) - 1))
    (input_tokens,) = metrics["gen_ai.client.inference.operation.input_tokens"].data.data_points
    (output_tokens,) = metrics["gen_ai.client.inference.operation.output_tokens"].data.data_points
    assert (input_tokens.sum, output_tokens.sum) == (12, len(WORDS))
    assert dict(input_tokens.attributes) == dict(llm.attributes)  # no gen_ai.token.type
    # the previous release's histogram is recorded only when asked for
    assert "gen_ai.client.token.usage" not in metrics


@pytest.mark.parametrize("opt_in", ["gen_ai/dup", "http, gen_ai/dup"])
async def test_gen_ai_dup_records_the_previous_token_histogram_as_well(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch, opt_in: str
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    app = TracingMiddleware(
        chat_app(),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=True))

    metrics = telemetry.histograms()
    previous = metrics["gen_ai.client.token.usage"]
    assert previous.unit == "{token}"
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in previous.data.data_points}
    assert tokens == {"input": 12, "output": len(WORDS)}
    (current,) = metrics["gen_ai.client.inference.operation.output_tokens"].data.data_points
    assert current.sum == len(WORDS)


async def test_other_opt_in_values_keep_the_current_names_only(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental,http/dup")
    app = TracingMiddleware(
        chat_app(),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=True))

    metrics = telemetry.histograms()
    assert "gen_ai.client.token.usage" not in metrics
    assert "gen_ai.client.inference.operation.input_tokens" in metrics


async def test_a_failed_llm_request_records_duration_with_its_error_only(
    telemetry: Telemetry,
) -> None:
    app = TracingMiddleware(
        chat_app(delay=0.002),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    await call(
        app, "POST", "/v1/chat/completions", body=chat_request(stream=True), disconnect_after=3
    )

    metrics = telemetry.histograms()
    (llm,) = metrics["gen_ai.server.request.duration"].data.data_points
    assert llm.attributes["error.type"] == "client_disconnected"
    assert "gen_ai.server.time_to_first_token" not in metrics
    assert "gen_ai.server.time_per_output_token" not in metrics
    (http,) = metrics["http.server.request.duration"].data.data_points
    assert http.attributes["error.type"] == "client_disconnected"
