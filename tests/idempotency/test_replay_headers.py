"""A replay never reports the quota that was left when the first response was sent."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aimiddleware import IdempotencyMiddleware
from aimiddleware.ratelimit import RateLimitMiddleware, Tier

pytestmark = pytest.mark.anyio


async def chat(request: Request) -> JSONResponse:
    await request.body()
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    return JSONResponse({"object": "chat.completion", "choices": [], "usage": usage})


def stack() -> IdempotencyMiddleware:
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    limited = RateLimitMiddleware(app, tiers=[Tier("anyone", requests="10/minute")])
    return IdempotencyMiddleware(limited, anonymous="shared")


async def test_a_replay_carries_no_recorded_rate_limit_headers() -> None:
    app = stack()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        keyed = {"Idempotency-Key": "order-1"}
        first = await client.post("/v1/chat/completions", json=body, headers=keyed)
        other = await client.post("/v1/chat/completions", json=body)  # spends one more request
        replay = await client.post("/v1/chat/completions", json=body, headers=keyed)
    assert first.headers["x-ratelimit-remaining-requests"] == "9"
    assert other.headers["x-ratelimit-remaining-requests"] == "8"
    assert "ratelimit" in first.headers
    assert "ratelimit-policy" in first.headers
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content
    # the replay ran nothing and spent nothing: the first response's "9 left" would be a lie
    stale = [name for name in replay.headers if name.startswith(("x-ratelimit-", "ratelimit"))]
    assert stale == []
