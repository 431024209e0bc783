"""RFC 6750 / MCP challenges and the RFC 9728 metadata, parsed and checked field by field."""

from __future__ import annotations

import pytest

from aimiddleware.oauth import DPoP, OAuthMiddleware, ScopeRule

from .apps import RESOURCE, bearer, client_for, echo_app, middleware
from .issuer import Issuer, parse_challenges

pytestmark = pytest.mark.anyio

METADATA_URL = "https://api.test/.well-known/oauth-protected-resource"


async def test_no_credentials_is_401_with_metadata_and_scope_and_no_error(issuer: Issuer) -> None:
    async with client_for(middleware(issuer)) as client:
        response = await client.post("/v1/chat/completions", json={})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "error": {
            "message": "authentication required",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    challenges = parse_challenges(response.headers.get_list("www-authenticate"))
    assert list(challenges) == ["Bearer"]
    assert challenges["Bearer"] == {"scope": "chat", "resource_metadata": METADATA_URL}


async def test_unknown_scheme_is_401_without_error_code(issuer: Issuer) -> None:
    async with client_for(middleware(issuer)) as client:
        response = await client.get("/v1/models", headers={"authorization": "Basic dTpw"})
    assert response.status_code == 401
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge == {"scope": "models:read", "resource_metadata": METADATA_URL}


async def test_missing_scope_is_403_insufficient_scope(issuer: Issuer) -> None:
    token = issuer.mint(scope="models:read")
    async with client_for(middleware(issuer)) as client:
        response = await client.post("/v1/embeddings", headers=bearer(token), json={})
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "message": "the access token lacks the required scope: embeddings",
            "type": "permission_error",
            "param": None,
            "code": "insufficient_scope",
        }
    }
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge == {
        "error": "insufficient_scope",
        "error_description": "the access token lacks the required scope: embeddings",
        "scope": "embeddings",
        "resource_metadata": METADATA_URL,
    }


async def test_rule_needs_every_scope(issuer: Issuer) -> None:
    rules = [ScopeRule("/v1/chat/completions", "chat tools:run", methods=["POST"])]
    async with client_for(middleware(issuer, rules=rules)) as client:
        partial = await client.post(
            "/v1/chat/completions", headers=bearer(issuer.mint(scope="chat")), json={}
        )
        full = await client.post(
            "/v1/chat/completions", headers=bearer(issuer.mint(scope="chat tools:run")), json={}
        )
    assert partial.status_code == 403
    challenge = parse_challenges(partial.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["scope"] == "chat tools:run"
    assert full.status_code == 200


async def test_realm_is_included_when_configured(issuer: Issuer) -> None:
    async with client_for(middleware(issuer, realm="llm-api")) as client:
        response = await client.get("/v1/models")
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["realm"] == "llm-api"


async def test_dpop_enabled_adds_a_dpop_challenge(issuer: Issuer) -> None:
    async with client_for(middleware(issuer, dpop=DPoP(algorithms=["ES256"]))) as client:
        response = await client.get("/v1/models")
    challenges = parse_challenges(response.headers.get_list("www-authenticate"))
    assert challenges["Bearer"] == {"scope": "models:read", "resource_metadata": METADATA_URL}
    assert challenges["DPoP"] == {
        "scope": "models:read",
        "resource_metadata": METADATA_URL,
        "algs": "ES256",
    }


async def test_public_path_is_never_looked_at(issuer: Issuer) -> None:
    async with client_for(middleware(issuer)) as client:
        response = await client.get("/health", headers={"authorization": "Bearer not-a-token"})
    assert response.status_code == 200
    assert response.json()["principal"] is None


async def test_metadata_document(issuer: Issuer) -> None:
    mw = middleware(issuer, resource_name="Test LLM API", scopes_supported=["admin"])
    async with client_for(mw) as client:
        response = await client.get("/.well-known/oauth-protected-resource")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json() == {
        "resource": RESOURCE,
        "bearer_methods_supported": ["header"],
        "authorization_servers": [issuer.url],
        "scopes_supported": ["models:read", "chat", "embeddings", "admin"],
        "resource_name": "Test LLM API",
    }


async def test_metadata_at_the_path_suffixed_form(issuer: Issuer) -> None:
    mw = OAuthMiddleware(echo_app(), resource="https://api.test/llm", issuer=issuer.url)
    async with client_for(mw) as client:
        suffixed = await client.get("/.well-known/oauth-protected-resource/llm")
        bare = await client.get("/.well-known/oauth-protected-resource")
        unauthenticated = await client.get("/v1/models")
    assert suffixed.json()["resource"] == "https://api.test/llm"
    assert bare.json() == suffixed.json()
    challenge = parse_challenges(unauthenticated.headers.get_list("www-authenticate"))["Bearer"]
    # the challenge points at exactly the URL the document is served at (RFC 9728 section 3.1)
    assert challenge["resource_metadata"] == (
        "https://api.test/.well-known/oauth-protected-resource/llm"
    )


async def test_metadata_lists_dpop(issuer: Issuer) -> None:
    mw = middleware(issuer, dpop=DPoP(required=True, algorithms=["ES256", "Ed25519"]))
    async with client_for(mw) as client:
        document = (await client.get("/.well-known/oauth-protected-resource")).json()
    assert document["dpop_signing_alg_values_supported"] == ["ES256", "Ed25519"]
    assert document["dpop_bound_access_tokens_required"] is True


async def test_more_than_one_authorization_header_is_400(issuer: Issuer) -> None:
    token = issuer.mint()
    async with client_for(middleware(issuer)) as client:
        response = await client.post(
            "/v1/chat/completions",
            headers=[("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")],
            json={},
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_anonymous_allowed_on_unmatched_paths_when_configured(issuer: Issuer) -> None:
    async with client_for(middleware(issuer, allow_anonymous=True)) as client:
        anonymous = await client.get("/open")
        protected = await client.get("/v1/models")
        bad = await client.get("/open", headers=bearer("garbage-token"))
    assert anonymous.status_code == 200
    assert anonymous.json()["annotations"]["aimiddleware.auth.outcome"] == "anonymous"
    assert protected.status_code == 401
    assert bad.status_code == 401  # a bad credential is refused even where none is needed


async def test_non_http_scopes_pass_through(issuer: Issuer) -> None:
    seen: list[str] = []

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        seen.append(scope["type"])

    mw = OAuthMiddleware(app, resource=RESOURCE, issuer=issuer.url)
    await mw({"type": "websocket", "path": "/v1/models", "headers": []}, None, None)  # type: ignore[arg-type]
    assert seen == ["websocket"]
