"""Over a real socket: uvicorn serves the protected app, lifespan closes the HTTP client."""

from __future__ import annotations

import httpx
import pytest

from tests.servers import ThreadedServer

from .apps import middleware
from .issuer import Issuer


def test_served_by_uvicorn_and_closed_at_shutdown(issuer: Issuer) -> None:
    mw = middleware(issuer)
    with ThreadedServer(mw) as server, httpx.Client(base_url=server.url) as client:
        ok = client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {issuer.mint()}"},
            json={},
        )
        refused = client.get("/v1/models")
        metadata = client.get("/.well-known/oauth-protected-resource")
    assert ok.status_code == 200
    assert refused.status_code == 401
    assert metadata.json()["resource"] == "https://api.test"
    assert mw._http is None  # the lifespan shutdown closed the client it had opened


@pytest.mark.anyio
async def test_a_given_http_client_is_not_closed(issuer: Issuer) -> None:
    async with httpx.AsyncClient() as own:
        mw = middleware(issuer, http_client=own)
        await mw.aclose()
        assert not own.is_closed
