"""Small protected apps for the tests: each call builds a fresh app and middleware."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aimiddleware import get_principal
from aimiddleware.context import get_annotations
from aimiddleware.oauth import OAuthMiddleware, ScopeRule

from .issuer import Issuer

RESOURCE = "https://api.test"


async def whoami(request: Request) -> Response:
    principal = get_principal(request.scope)
    body: dict[str, Any] = {"principal": None, "annotations": dict(get_annotations(request.scope))}
    if principal is not None:
        body["principal"] = {
            "id": principal.id,
            "subject": principal.subject,
            "client_id": principal.client_id,
            "scopes": sorted(principal.scopes),
            "tier": principal.tier,
            "token_id": principal.token_id,
            "credential": principal.credential,
        }
    body["scope_keys"] = sorted(k for k in request.scope if isinstance(k, str))
    return JSONResponse(body)


def echo_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/chat/completions", whoami, methods=["POST"]),
            Route("/v1/models", whoami),
            Route("/v1/models/{model}", whoami),
            Route("/v1/embeddings", whoami, methods=["POST"]),
            Route("/health", whoami),
            Route("/open", whoami),
        ]
    )


RULES = [
    ScopeRule("/v1/models*", ["models:read"], methods=["GET"]),
    ScopeRule("/v1/chat/completions", ["chat"], methods=["POST"]),
    ScopeRule("/v1/embeddings", ["embeddings"], methods=["POST"]),
]


def middleware(source: Issuer | None, **options: Any) -> OAuthMiddleware:
    defaults: dict[str, Any] = {"resource": RESOURCE, "rules": RULES, "public_paths": ["/health"]}
    if source is not None:
        defaults["issuer"] = source.url
    defaults.update(options)
    return OAuthMiddleware(echo_app(), **defaults)


@contextlib.asynccontextmanager
async def client_for(mw: OAuthMiddleware) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=mw)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=RESOURCE) as client:
            yield client
    finally:
        await mw.aclose()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
