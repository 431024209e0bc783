"""Scope rules, public paths and the metadata route match the route path, under a prefix too.

Under ``Mount("/api", app)`` or ``uvicorn --root-path /api`` the middleware sees
``path="/api/v1/chat/completions"``: a rule for ``/v1/chat/completions`` that matched the raw
path would be skipped, and a token without ``chat`` would reach the endpoint.
"""

from __future__ import annotations

import httpx
import pytest

from ..mounts import WAYS, client_for
from ..servers import ThreadedServer
from .apps import bearer, middleware
from .issuer import Issuer, parse_challenges

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("way", WAYS)
async def test_a_token_without_the_rule_scope_is_refused(issuer: Issuer, way: str) -> None:
    mw = middleware(issuer)
    without_chat = issuer.mint(scope="models:read")
    with_chat = issuer.mint(scope="chat")
    async with client_for(mw, way) as client:
        refused = await client.post("/v1/chat/completions", headers=bearer(without_chat), json={})
        allowed = await client.post("/v1/chat/completions", headers=bearer(with_chat), json={})
    await mw.aclose()
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"
    challenge = parse_challenges(refused.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["scope"] == "chat"
    assert allowed.status_code == 200


@pytest.mark.parametrize("way", WAYS)
async def test_parameterised_and_wildcard_rules_match_under_a_prefix(
    issuer: Issuer, way: str
) -> None:
    mw = middleware(issuer)
    chat_only = issuer.mint(scope="chat")
    async with client_for(mw, way) as client:
        listing = await client.get("/v1/models", headers=bearer(chat_only))
        one = await client.get("/v1/models/gpt", headers=bearer(chat_only))
    await mw.aclose()
    assert listing.status_code == one.status_code == 403


@pytest.mark.parametrize("way", WAYS)
async def test_public_paths_stay_public_under_a_prefix(issuer: Issuer, way: str) -> None:
    mw = middleware(issuer)
    async with client_for(mw, way) as client:
        health = await client.get("/health")
        models = await client.get("/v1/models")
    await mw.aclose()
    assert health.status_code == 200
    assert health.json()["principal"] is None
    assert models.status_code == 401


@pytest.mark.parametrize("way", WAYS)
async def test_the_metadata_route_is_served_under_a_prefix(issuer: Issuer, way: str) -> None:
    mw = middleware(issuer)
    async with client_for(mw, way) as client:
        response = await client.get("/.well-known/oauth-protected-resource")
    await mw.aclose()
    assert response.status_code == 200
    assert response.json()["resource"] == "https://api.test"


async def test_a_token_without_chat_is_refused_under_uvicorn_root_path(issuer: Issuer) -> None:
    mw = middleware(issuer)
    without_chat = issuer.mint(scope="models:read")
    server = ThreadedServer(mw)
    server.server.config.root_path = "/api"  # as `uvicorn --root-path /api` sets it
    with server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            # the proxy in front stripped "/api"; uvicorn puts it back into the scope's path
            refused = await client.post(
                "/v1/chat/completions", headers=bearer(without_chat), json={}
            )
            health = await client.get("/health")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"
    assert health.status_code == 200
