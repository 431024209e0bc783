"""``exempt_paths`` match the route path: an exempt route stays exempt under a prefix."""

from __future__ import annotations

import pytest

from aimiddleware.ratelimit import RateLimitMiddleware, Tier

from ..mounts import WAYS, client_for
from .apps import Upstream
from .conftest import Keep

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("exempt", ["/ping", "/pi*", "/{probe}"])
async def test_exempt_paths_are_exempt_under_a_prefix(way: str, exempt: str, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(), tiers=[Tier("human", requests="1/minute")], exempt_paths=[exempt]
        )
    )
    async with client_for(limited, way) as client:
        pings = [await client.get("/ping") for _ in range(3)]
        first = await client.post("/v1/chat/completions", json={"model": "m", "messages": []})
        second = await client.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert [p.status_code for p in pings] == [200, 200, 200]
    assert all("ratelimit" not in p.headers for p in pings)
    assert first.status_code == 200
    assert second.status_code == 429
