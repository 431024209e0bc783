"""Tracing configurations: ours with an SDK sampling everything, next to the contrib ASGI
instrumentation (default, and with its per-message spans switched off).

All three export through a BatchSpanProcessor to an exporter that drops the spans, so what is
measured is the instrumentation and the SDK, not a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .apps import ASGIApp, Config, bare_app, config


def _providers() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    class DropExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider(sampler=ALWAYS_ON)
    tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tracer_provider, meter_provider


def tracing_always_on() -> ASGIApp:
    from aimiddleware.tracing import TracingMiddleware

    tracer_provider, meter_provider = _providers()
    return TracingMiddleware(
        bare_app(), tracer_provider=tracer_provider, meter_provider=meter_provider
    )


def tracing_traces_only() -> ASGIApp:
    from opentelemetry.metrics import NoOpMeterProvider

    from aimiddleware.tracing import TracingMiddleware

    tracer_provider, _ = _providers()
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


def _otel_asgi(exclude_spans: list[str] | None) -> ASGIApp:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    tracer_provider, meter_provider = _providers()
    return OpenTelemetryMiddleware(
        bare_app(),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        exclude_spans=exclude_spans,  # type: ignore[arg-type]
    )


config(
    Config(
        "tracing:always-on",
        tracing_always_on,
        group="tracing",
        description="TracingMiddleware, SDK always-on sampler, batch processor, metrics",
    )
)
config(
    Config(
        "tracing:traces-only",
        tracing_traces_only,
        group="tracing",
        description="as always-on, metrics to a no-op meter: the SDK's metric cost shows apart",
    )
)
config(
    Config(
        "tracing:api-only",
        tracing_api_only,
        group="tracing",
        description="no SDK (API no-op): the middleware's own work, request and response parsed",
    )
)
config(
    Config(
        "peer:otel-asgi",
        lambda: _otel_asgi(None),
        group="peers",
        description="opentelemetry-instrumentation-asgi, same SDK setup",
    )
)
config(
    Config(
        "peer:otel-asgi-exclude-spans",
        lambda: _otel_asgi(["receive", "send"]),
        group="peers",
        description="opentelemetry-instrumentation-asgi with exclude_spans=receive,send",
    )
)
