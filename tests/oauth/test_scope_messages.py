"""A 403 says which credential lacks which scopes, in the body as in the challenge."""

from __future__ import annotations

import pytest

from aimiddleware.oauth import APIKeys, OAuthMiddleware, ScopeRule

from .apps import RESOURCE, RULES, bearer, client_for, echo_app, middleware
from .issuer import Issuer, parse_challenges

pytestmark = pytest.mark.anyio


async def test_an_api_key_is_called_an_api_key_and_the_missing_scope_is_named() -> None:
    key, record = APIKeys.generate("reader", scopes="models:read", tier="free")
    mw = OAuthMiddleware(echo_app(), resource=RESOURCE, api_keys=APIKeys([record]), rules=RULES)
    async with client_for(mw) as client:
        refused = await client.post("/v1/chat/completions", headers=bearer(key), json={})
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "the API key lacks the required scope: chat"
    challenge = parse_challenges(refused.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["error_description"] == "the API key lacks the required scope: chat"


async def test_only_the_scopes_the_token_lacks_are_named(issuer: Issuer) -> None:
    rules = [ScopeRule("/v1/chat/completions", "chat tools:run files:read", methods=["POST"])]
    async with client_for(middleware(issuer, rules=rules)) as client:
        one = await client.post(
            "/v1/chat/completions",
            headers=bearer(issuer.mint(scope="chat files:read")),
            json={},
        )
        two = await client.post(
            "/v1/chat/completions", headers=bearer(issuer.mint(scope="chat")), json={}
        )
    assert one.json()["error"]["message"] == "the access token lacks the required scope: tools:run"
    assert (
        two.json()["error"]["message"]
        == "the access token lacks the required scopes: tools:run files:read"
    )
    # the challenge still names every scope the route needs (RFC 6750 section 3)
    challenge = parse_challenges(two.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["scope"] == "chat tools:run files:read"
