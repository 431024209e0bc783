"""A replayed answer's span carries the route of the response it repeats, and says it replays."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.tracing import TracingMiddleware

from .apps import call, chat_request, openai_like_app
from .conftest import Telemetry

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mounted", [False, True], ids=["direct", "mount"])
async def test_a_replay_span_is_named_after_the_route_it_repeats(
    telemetry: Telemetry, stream: bool, mounted: bool
) -> None:
    app = IdempotencyMiddleware(openai_like_app(), anonymous="shared")
    served = Starlette(routes=[Mount("/api", app=app)]) if mounted else app
    traced = TracingMiddleware(
        served, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    path = "/api/v1/chat/completions" if mounted else "/v1/chat/completions"
    body = chat_request(stream=stream)
    headers = [(b"idempotency-key", b"route-1")]

    first = await call(traced, "POST", path, body=body, headers=headers)
    again = await call(traced, "POST", path, body=body, headers=headers)

    assert first.status == again.status == 200
    original, replay = sorted(telemetry.spans(), key=lambda span: span.start_time or 0)
    route = "/api/v1/chat/completions" if mounted else "/v1/chat/completions"
    assert dict(original.attributes or {})["http.route"] == route
    replayed = dict(replay.attributes or {})
    assert replayed["aimiddleware.idempotency.outcome"] == "replayed"
    assert replayed["http.route"] == route
    assert replay.name == f"POST {route}"
