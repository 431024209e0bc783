"""The reference app's OpenTelemetry set-up from OTEL_* variables (no model needed)."""

from __future__ import annotations

import pytest

from reference_app.telemetry import DEFAULT_EXCLUDED_URLS, setup_telemetry

OTEL_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_PYTHON_EXCLUDED_URLS",
    "OTEL_PYTHON_ASGI_EXCLUDED_URLS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


def _exporter(provider: object) -> object:
    processor = provider._active_span_processor._span_processors[0]  # type: ignore[attr-defined]
    return processor._batch_processor._exporter


def test_without_an_endpoint_nothing_is_set_up() -> None:
    telemetry = setup_telemetry()
    assert telemetry.tracer_provider is None
    assert telemetry.meter_provider is None
    assert telemetry.excluded_urls == DEFAULT_EXCLUDED_URLS


def test_an_endpoint_sets_up_otlp_over_http_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc-a")
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "^/ready$")
    telemetry = setup_telemetry()
    try:
        exporter = _exporter(telemetry.tracer_provider)
        assert type(exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
        assert telemetry.tracer_provider.resource.attributes["service.name"] == "svc-a"
        assert telemetry.meter_provider is not None
        assert telemetry.excluded_urls is None  # the middleware reads the variable itself
    finally:
        telemetry.shutdown()


def test_grpc_is_chosen_by_the_protocol_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    telemetry = setup_telemetry()
    try:
        exporter = _exporter(telemetry.tracer_provider)
        assert type(exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
        assert telemetry.meter_provider is None  # no metrics endpoint was given
        service = telemetry.tracer_provider.resource.attributes["service.name"]
        assert service == "aimiddleware-reference"
    finally:
        telemetry.shutdown()


def test_an_unknown_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="http/protobuf or grpc"):
        setup_telemetry()
