"""MCPOriginMiddleware's ``paths`` match the route path: under ``Mount("/tools")`` too."""

from __future__ import annotations

import pytest

from aimiddleware.mcp import MCPOriginMiddleware

from ..mounts import WAYS, client_for
from ._helpers import Exchange, recording_app, rpc

pytestmark = pytest.mark.anyio

EVIL = {"origin": "https://evil.example"}
GOOD = {"origin": "https://chat.example.com"}


def guarded() -> MCPOriginMiddleware:
    return MCPOriginMiddleware(
        recording_app(Exchange()), allowed_origins=["https://chat.example.com"], paths=["/mcp"]
    )


@pytest.mark.parametrize("way", WAYS)
async def test_a_foreign_origin_is_refused_on_the_mcp_path(way: str) -> None:
    async with client_for(guarded(), way, prefix="/tools") as client:
        refused = await client.post("/mcp", headers=EVIL, content=rpc("ping"))
        below = await client.post("/mcp/session", headers=EVIL, content=rpc("ping"))
        allowed = await client.post("/mcp", headers=GOOD, content=rpc("ping"))
    assert refused.status_code == below.status_code == 403
    assert refused.json()["error"]["data"] == {"error": "forbidden_origin"}
    assert allowed.status_code == 200


@pytest.mark.parametrize("way", WAYS)
async def test_paths_outside_the_prefixes_are_not_checked(way: str) -> None:
    async with client_for(guarded(), way, prefix="/tools") as client:
        other = await client.post("/v1/models", headers=EVIL, content=rpc("ping"))
    assert other.status_code == 200
