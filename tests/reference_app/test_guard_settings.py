from __future__ import annotations

import pytest

from aimiddleware.guard import RequestGuardMiddleware
from reference_app import Settings
from reference_app.stack import build_stack
from reference_app.telemetry import Telemetry


def guard_of(settings: Settings) -> RequestGuardMiddleware:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    tracer_provider, meter_provider = TracerProvider(), MeterProvider()
    try:
        app = build_stack(object(), settings, Telemetry(tracer_provider, meter_provider))
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
    guard = app.app  # inside ShutdownTelemetry: the guard is the outermost middleware
    assert isinstance(guard, RequestGuardMiddleware)
    return guard


def test_the_guard_is_on_by_default() -> None:
    guard = guard_of(Settings(auth=False))
    assert guard.max_body_bytes == 1024 * 1024
    assert guard.body_timeout == 30.0
    assert guard.max_header_bytes == 32 * 1024


def test_each_limit_is_set_or_turned_off_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIMW_MAX_REQUEST_BODY", "off")
    monkeypatch.setenv("AIMW_REQUEST_BODY_TIMEOUT", "off")
    monkeypatch.setenv("AIMW_MAX_REQUEST_HEADERS", "4096")
    guard = guard_of(Settings(auth=False))
    assert guard.max_body_bytes is None
    assert guard.body_timeout is None
    assert guard.max_header_bytes == 4096
