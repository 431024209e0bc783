"""Tracing configurations: ours with an SDK sampling everything, next to the contrib ASGI
instrumentation (default, and with its per-message spans switched off).

All three export through a BatchSpanProcessor to an exporter that drops the spans, so what is
measured is the instrumentation and the SDK, not a network.
"""

from __future__ import annotations

from typing import Any

from .apps import ASGIApp, Config, bare_app, sdk_providers


def tracing_always_on() -> ASGIApp:
    from aimiddleware.tracing import TracingMiddleware

    tracer_provider, meter_provider = sdk_providers()
    return TracingMiddleware(
        bare_app(), tracer_provider=tracer_provider, meter_provider=meter_provider
    )


def tracing_traces_only() -> ASGIApp:
    from opentelemetry.metrics import NoOpMeterProvider

    from aimiddleware.tracing import TracingMiddleware

    tracer_provider, _ = sdk_providers()
    return TracingMiddleware(
        bare_app(), tracer_provider=tracer_provider, meter_provider=NoOpMeterProvider()
    )


def tracing_api_only() -> ASGIApp:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from aimiddleware.tracing import TracingMiddleware

    return TracingMiddleware(
        bare_app(), tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()
    )


# the histograms TracingMiddleware records a non-streamed chat request into: name, unit and
# bucket boundaries as the OpenTelemetry semantic conventions give them (docs/tracing.md)
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_LLM_SECONDS = tuple(round(0.01 * 2**n, 2) for n in range(14))  # 0.01 to 81.92
_TOKENS = tuple(4**n for n in range(14))  # 1 to 67108864
_HISTOGRAMS = {
    "http.server.request.duration": ("s", _SECONDS),
    "gen_ai.server.request.duration": ("s", _LLM_SECONDS),
    "gen_ai.client.inference.operation.input_tokens": ("{token}", _TOKENS),
    "gen_ai.client.inference.operation.output_tokens": ("{token}", _TOKENS),
}


def _floor_histograms(meter_provider: Any) -> dict[str, Any]:
    meter = meter_provider.get_meter("aimiddleware.tracing", "floor")
    return {
        name: meter.create_histogram(
            name, unit=unit, explicit_bucket_boundaries_advisory=list(buckets)
        )
        for name, (unit, buckets) in _HISTOGRAMS.items()
    }


def tracing_sdk_floor() -> ASGIApp:
    """Only the SDK calls TracingMiddleware makes on the benchmark's request, nothing else.

    The same span (kind, name, the 8 attributes known at arrival, the 11 known at the end) and
    the same four histogram records with the same attribute sets, all fixed in advance: no
    header read, no body parsed. What the SDK costs for that much telemetry, the floor under
    ``tracing:always-on``; the difference between the two is the middleware's own work.
    ``tests/tracing/test_floor.py`` checks that the two record the same names.
    """
    return floor_app(*sdk_providers())


def floor_app(tracer_provider: Any, meter_provider: Any) -> ASGIApp:
    """:func:`tracing_sdk_floor` on the given providers."""
    from opentelemetry import context, trace
    from opentelemetry.trace import SpanKind

    tracer = tracer_provider.get_tracer("aimiddleware.tracing")
    histograms = _floor_histograms(meter_provider)
    app = bare_app()
    start = {
        "http.request.method": "POST",
        "url.scheme": "http",
        "url.path": "/v1/chat/completions",
        "network.protocol.version": "1.1",
        "server.address": "127.0.0.1",
        "server.port": 8000,
        "client.address": "127.0.0.1",
        "aimiddleware.request_id": "req_00000000000000000000000000000000",
    }
    end = {
        "http.response.status_code": 200,
        "http.route": "/v1/chat/completions",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "SmolLM2-135M-Instruct",
        "gen_ai.request.max_tokens": 16,
        "gen_ai.response.id": "chatcmpl-bench",
        "gen_ai.response.model": "SmolLM2-135M-Instruct",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 7,
    }
    http = {
        "http.request.method": "POST",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "http.response.status_code": 200,
        "http.route": "/v1/chat/completions",
    }
    llm = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "SmolLM2-135M-Instruct",
        "gen_ai.response.model": "SmolLM2-135M-Instruct",
    }

    parent = context.Context()  # a request without a traceparent: no parent, as the middleware's

    async def floor(scope: Any, receive: Any, send: Any) -> None:
        span = tracer.start_span("POST", parent, kind=SpanKind.SERVER, attributes=start)
        token = context.attach(trace.set_span_in_context(span, parent))
        try:
            await app(scope, receive, send)
        finally:
            context.detach(token)
            span.update_name("POST /v1/chat/completions")
            span.set_attributes(end)
            span.end()
            current = context.get_current()
            histograms["http.server.request.duration"].record(0.001, http, current)
            histograms["gen_ai.server.request.duration"].record(0.001, llm, current)
            histograms["gen_ai.client.inference.operation.input_tokens"].record(12, llm, current)
            histograms["gen_ai.client.inference.operation.output_tokens"].record(7, llm, current)

    return floor


def _otel_asgi(exclude_spans: list[str] | None) -> ASGIApp:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    tracer_provider, meter_provider = sdk_providers()
    return OpenTelemetryMiddleware(
        bare_app(),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        exclude_spans=exclude_spans,  # type: ignore[arg-type]
    )


CONFIGS = [
    Config(
        "tracing:always-on",
        tracing_always_on,
        group="tracing",
        description="TracingMiddleware, SDK always-on sampler, batch processor, metrics",
    ),
    Config(
        "tracing:traces-only",
        tracing_traces_only,
        group="tracing",
        description="as always-on, metrics to a no-op meter: the SDK's metric cost shows apart",
    ),
    Config(
        "tracing:api-only",
        tracing_api_only,
        group="tracing",
        description="no SDK (API no-op): the middleware's own work, request and response parsed",
    ),
    Config(
        "tracing:sdk-floor",
        tracing_sdk_floor,
        group="tracing",
        description="the same span and records as always-on, fixed in advance: the SDK alone",
    ),
    Config(
        "peer:otel-asgi",
        lambda: _otel_asgi(None),
        group="peers",
        description="opentelemetry-instrumentation-asgi, same SDK setup",
    ),
    Config(
        "peer:otel-asgi-exclude-spans",
        lambda: _otel_asgi(["receive", "send"]),
        group="peers",
        description="opentelemetry-instrumentation-asgi with exclude_spans=receive,send",
    ),
]
