"""The benchmarks' ``tracing:sdk-floor`` makes the SDK calls the middleware makes, no fewer.

The floor is what the SDK alone costs for the middleware's telemetry; the comparison is honest
only while both record the same span attributes and the same histograms with the same
attribute sets on the benchmark's request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aimiddleware.tracing import TracingMiddleware
from benchmarks.apps import REQUEST_BODY, bare_app
from benchmarks.configs_tracing import floor_app
from benchmarks.inprocess import BASE_HEADERS, SCOPE

from .conftest import Telemetry

pytestmark = pytest.mark.anyio


async def _drive(app: Any) -> None:
    """One request as ``benchmarks.inprocess`` sends it."""
    scope = {**SCOPE, "headers": BASE_HEADERS, "state": {}}
    messages = [{"type": "http.request", "body": REQUEST_BODY, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        return None

    await app(scope, receive, send)


def _recorded(telemetry: Telemetry) -> tuple[str, set[str], dict[str, list[dict[str, Any]]]]:
    span = telemetry.span()
    metrics = {
        name: [dict(point.attributes) for point in metric.data.data_points]
        for name, metric in telemetry.histograms().items()
    }
    return span.name, set(span.attributes or {}), metrics


async def test_the_floor_records_what_the_middleware_records(
    telemetry: Telemetry, floor_telemetry: Telemetry
) -> None:
    await _drive(
        TracingMiddleware(
            bare_app(),
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
        )
    )
    middleware = _recorded(telemetry)

    await _drive(floor_app(floor_telemetry.tracer_provider, floor_telemetry.meter_provider))
    floor = _recorded(floor_telemetry)

    assert floor == middleware
    name, attributes, metrics = middleware
    assert name == "POST /v1/chat/completions"
    assert len(attributes) == 19  # 8 at arrival, 11 at the end
    assert len(metrics) == 4


@pytest.fixture
def floor_telemetry() -> Iterator[Telemetry]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(tracer_provider, meter_provider, exporter, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()
