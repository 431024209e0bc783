from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .apps import SECRETS


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    spans_exporter: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.spans_exporter.get_finished_spans()

    def span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def histograms(self) -> dict[str, Any]:
        """Metric name -> the metric (with its data points) as the SDK reports it."""
        data = self.metrics.get_metrics_data()
        found: dict[str, Any] = {}
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def assert_no_secrets(spans: tuple[ReadableSpan, ...], lines: list[str]) -> None:
    """Every attribute of every span (and its events, status, name) and every log line."""
    texts: list[str] = list(lines)
    for span in spans:
        texts.append(span.name)
        texts.append(span.status.description or "")
        for key, value in (span.attributes or {}).items():
            texts += [key, *_strings(value)]
        for event in span.events:
            for key, value in (event.attributes or {}).items():
                texts += [key, *_strings(value)]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"secret leaked into telemetry: {text!r}"


@pytest.fixture
def telemetry(caplog: pytest.LogCaptureFixture) -> Iterator[Telemetry]:
    """SDK providers with in-memory readers, handed to the middleware (no global state).

    On teardown, scans every span attribute and log line of the test for the credentials the
    test requests carry.
    """
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    caplog.set_level(logging.DEBUG)
    try:
        yield Telemetry(tracer_provider, meter_provider, exporter, reader)
        assert_no_secrets(exporter.get_finished_spans(), [r.getMessage() for r in caplog.records])
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
