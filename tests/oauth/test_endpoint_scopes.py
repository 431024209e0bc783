"""Per-endpoint scopes: the FastAPI dependency and the decorator, behind the middleware."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aimiddleware import Principal
from aimiddleware.oauth import (
    OAuthHTTPException,
    OAuthMiddleware,
    RequireScopes,
    oauth_exception_handler,
    requires_scopes,
)

from .apps import RESOURCE, bearer, client_for
from .issuer import Issuer, parse_challenges

pytestmark = pytest.mark.anyio


def fastapi_app(*, handler: bool) -> FastAPI:
    handlers = {OAuthHTTPException: oauth_exception_handler} if handler else {}
    app = FastAPI(exception_handlers=handlers)  # type: ignore[arg-type]

    @app.post("/v1/embeddings")
    async def embeddings(
        principal: Annotated[Principal, Depends(RequireScopes("embeddings"))],
    ) -> dict[str, str]:
        return {"id": principal.id}

    @app.get("/v1/files")
    @requires_scopes("files:read")
    async def files(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return app


def protected(issuer: Issuer, *, handler: bool = True) -> OAuthMiddleware:
    # no route rules: the endpoints carry their own scopes
    return OAuthMiddleware(
        fastapi_app(handler=handler), resource=RESOURCE, issuer=issuer.url, allow_anonymous=True
    )


async def test_dependency_returns_the_principal(issuer: Issuer) -> None:
    token = issuer.mint(scope="embeddings")
    async with client_for(protected(issuer)) as client:
        response = await client.post("/v1/embeddings", headers=bearer(token), json={})
    assert response.status_code == 200
    assert response.json() == {"id": f"sub:user-1@{issuer.url}"}


async def test_dependency_refuses_a_missing_scope_with_the_challenge(issuer: Issuer) -> None:
    token = issuer.mint(scope="chat")
    async with client_for(protected(issuer)) as client:
        response = await client.post("/v1/embeddings", headers=bearer(token), json={})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["error"] == "insufficient_scope"
    assert challenge["scope"] == "embeddings"
    assert challenge["resource_metadata"] == f"{RESOURCE}/.well-known/oauth-protected-resource"


async def test_dependency_refuses_anonymous_with_401(issuer: Issuer) -> None:
    async with client_for(protected(issuer)) as client:
        response = await client.post("/v1/embeddings", json={})
    assert response.status_code == 401
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["scope"] == "embeddings"
    assert "error" not in challenge


async def test_dependency_without_the_handler_keeps_status_and_challenge(issuer: Issuer) -> None:
    token = issuer.mint(scope="chat")
    async with client_for(protected(issuer, handler=False)) as client:
        response = await client.post("/v1/embeddings", headers=bearer(token), json={})
    assert response.status_code == 403
    assert response.json() == {"detail": "the access token lacks the required scope: embeddings"}
    assert "insufficient_scope" in response.headers["www-authenticate"]


async def test_decorator_refuses_and_allows(issuer: Issuer) -> None:
    async with client_for(protected(issuer)) as client:
        refused = await client.get("/v1/files", headers=bearer(issuer.mint(scope="chat")))
        allowed = await client.get("/v1/files", headers=bearer(issuer.mint(scope="files:read")))
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    challenge = parse_challenges(refused.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["scope"] == "files:read"
    assert allowed.status_code == 200


def test_decorator_needs_a_request_parameter() -> None:
    with pytest.raises(TypeError, match="request"):

        @requires_scopes("x")
        async def endpoint() -> None: ...


async def test_dependency_keeps_both_challenges_when_dpop_is_on(issuer: Issuer) -> None:
    from aimiddleware.oauth import DPoP

    mw = OAuthMiddleware(
        fastapi_app(handler=True),
        resource=RESOURCE,
        issuer=issuer.url,
        allow_anonymous=True,
        dpop=DPoP(algorithms=["ES256"]),
    )
    async with client_for(mw) as client:
        response = await client.post("/v1/embeddings", headers=bearer(issuer.mint()), json={})
    assert response.status_code == 403
    (value,) = response.headers.get_list("www-authenticate")
    bearer_part, dpop_part = value.split(", DPoP ")
    assert bearer_part.startswith('Bearer error="insufficient_scope"')
    assert 'scope="embeddings"' in bearer_part
    assert dpop_part.endswith('algs="ES256"')
    assert "error=" not in dpop_part


async def test_added_with_add_middleware_as_documented(issuer: Issuer) -> None:
    from aimiddleware.oauth import ScopeRule

    app = fastapi_app(handler=True)
    app.add_middleware(
        OAuthMiddleware,
        resource=RESOURCE,
        issuer=issuer.url,
        # static keys: no lifespan runs here to close an HTTP client the middleware would open
        jwks=issuer.jwks(),
        rules=[ScopeRule("/v1/embeddings", ["embeddings"], methods=["POST"])],
        public_paths=["/health"],
    )
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=RESOURCE) as client:
        refused = await client.post("/v1/embeddings", json={})
        allowed = await client.post(
            "/v1/embeddings", headers=bearer(issuer.mint(scope="embeddings")), json={}
        )
    assert refused.status_code == 401
    assert allowed.status_code == 200
