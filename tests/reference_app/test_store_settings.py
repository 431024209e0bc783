from __future__ import annotations

from typing import Any

import pytest

from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.ratelimit import RateLimitMiddleware
from reference_app import Settings
from reference_app.stack import build_stack
from reference_app.telemetry import Telemetry

pytestmark = pytest.mark.redis


def middlewares(settings: Settings) -> list[Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    tracer_provider, meter_provider = TracerProvider(), MeterProvider()
    try:
        app: Any = build_stack(object(), settings, Telemetry(tracer_provider, meter_provider))
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
    found = []
    while hasattr(app, "app"):
        found.append(app)
        app = app.app
    return found


@pytest.mark.parametrize(
    "redis_url", ["redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0?prefix=demo:"]
)
def test_the_store_timeout_reaches_both_redis_clients(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nothing listens on port 1: building the stack does not connect
    monkeypatch.setenv("AIMW_STORE_TIMEOUT", "2")
    stack = middlewares(Settings(auth=False, redis_url=redis_url))
    idempotency = next(m for m in stack if isinstance(m, IdempotencyMiddleware))
    limiter = next(m for m in stack if isinstance(m, RateLimitMiddleware))
    store = idempotency.store
    assert "timeout=2.0" in repr(store)
    if "prefix=" in redis_url:
        assert "prefix='demo:'" in repr(store)
    assert limiter._engine._call._timeout == 2.0
    # one store URL for both: one Redis client, one connection pool
    assert store.client is limiter._engine.client


def test_the_store_timeout_is_half_a_second_by_default() -> None:
    stack = middlewares(Settings(auth=False, redis_url="redis://127.0.0.1:1/0"))
    limiter = next(m for m in stack if isinstance(m, RateLimitMiddleware))
    assert limiter._engine._call._timeout == 0.5
