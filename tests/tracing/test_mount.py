"""``excluded_urls`` and ``http.route`` follow the route path: the same spans under a prefix."""

from __future__ import annotations

import pytest

from aimiddleware.tracing import TracingMiddleware

from ..mounts import WAYS, client_for
from .apps import chat_app
from .conftest import Telemetry

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("way", WAYS)
async def test_excluded_urls_and_routes_under_a_prefix(telemetry: Telemetry, way: str) -> None:
    traced = TracingMiddleware(
        chat_app(),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        excluded_urls=["^/health$"],
    )
    async with client_for(traced, way) as client:
        health = await client.get("/health")
        item = await client.get("/v1/items/17")
    assert health.status_code == item.status_code == 200
    span = telemetry.span()  # only the item's: /health is excluded
    assert span.name == "GET /v1/items/{item_id}"
    attributes = dict(span.attributes or {})
    assert attributes["http.route"] == "/v1/items/{item_id}"
