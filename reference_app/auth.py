"""The demo's authorization: a development issuer and the OAuthMiddleware that trusts it.

The server is its own (development) authorization server: an RS256 key pair kept in a local
file (``.reference_app/issuer-key.json`` by default, created on first use, mode 0600), its JWKS
and RFC 8414 metadata served at ``/.well-known/...``, and ``python -m reference_app token`` to
mint RFC 9068 access tokens. The resource, the issuer and the tokens' audience are all the
server's public URL.

Scopes (these exact names): ``models:read`` for ``/v1/models*``, ``chat`` for chat and text
completions, ``embeddings`` for embeddings, ``mcp`` for the MCP endpoint (plus the scope of the
operation each tool calls). ``/health`` and the API docs stay open.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from joserfc import jwk, jwt

from aimiddleware.oauth import OAuthMiddleware, ScopeRule

from .playground import PAGE_PATHS
from .settings import Settings

SCOPES = ("models:read", "chat", "embeddings", "mcp")
KEY_ID = "reference-dev-1"

RULES = [
    ScopeRule("/v1/models*", ["models:read"], methods=["GET"]),
    ScopeRule("/v1/chat/completions", ["chat"], methods=["POST"]),
    ScopeRule("/v1/completions", ["chat"], methods=["POST"]),
    ScopeRule("/v1/embeddings", ["embeddings"], methods=["POST"]),
    # the MCP endpoint: 401 + resource_metadata here; each tool's own scope is checked behind
    # it by MCPScopeMiddleware (reference_app/mcp_server.py), which needs the JSON-RPC body
    ScopeRule("/mcp", ["mcp"]),
]
PUBLIC_PATHS = [
    "/health",
    # the playground page and its assets; /demo/token answers 404 unless demo mode is on
    *PAGE_PATHS,
    "/.well-known/oauth-authorization-server",
    "/.well-known/jwks.json",
    "/docs",
    "/redoc",
    "/openapi.json",
]


def public_url(settings: Settings) -> str:
    """The URL clients use: the resource identifier, the issuer and the tokens' audience."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"http://{settings.host}:{settings.port}"


def signing_key(settings: Settings) -> jwk.RSAKey:
    """The issuer's private key, created on first use (owner-only file, atomic write)."""
    path = Path(settings.auth_key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = jwk.RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig"})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(key.as_dict(private=True), out)
        try:
            # link, not replace: when `serve` and `token` race, the first key wins for both
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    imported = jwk.import_key(json.loads(path.read_text()), "RSA")
    return imported


def jwks(settings: Settings) -> dict[str, Any]:
    return {"keys": [signing_key(settings).as_dict(private=False)]}


def authorization_server_metadata(settings: Settings) -> dict[str, Any]:
    issuer = public_url(settings)
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "scopes_supported": list(SCOPES),
        # tokens come from `python -m reference_app token`, not from an OAuth flow
        "response_types_supported": [],
        "grant_types_supported": [],
    }


def mint(
    settings: Settings,
    *,
    scope: str,
    tier: str | None = None,
    client_id: str = "dev-agent",
    subject: str | None = None,
    ttl: int = 3600,
) -> str:
    """A signed RS256 ``at+jwt`` access token that this server trusts.

    ``subject`` is the user the token stands for; without one the token is the client's own
    (``sub`` = ``client_id``, as RFC 9068 has it for client credentials). Limits and
    idempotency records are per ``sub``: two users of one client are two callers.
    """
    url = public_url(settings)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": url,
        "aud": url,
        "sub": subject or client_id,
        "client_id": client_id,
        "scope": " ".join(scope.split()),
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    if tier:
        claims["tier"] = tier
    header = {"alg": "RS256", "typ": "at+jwt", "kid": KEY_ID}
    return jwt.encode(header, claims, signing_key(settings), algorithms=["RS256"])


def issuer_router(settings: Settings) -> APIRouter:
    """The development issuer's documents, served by the demo itself."""
    router = APIRouter(include_in_schema=False)
    metadata = authorization_server_metadata(settings)
    keys = jwks(settings)

    @router.get("/.well-known/oauth-authorization-server")
    async def server_metadata(request: Request) -> dict[str, Any]:
        return metadata

    @router.get("/.well-known/jwks.json")
    async def key_set(request: Request) -> dict[str, Any]:
        return keys

    return router


def oauth_middleware(app: Any, settings: Settings) -> OAuthMiddleware:
    url = public_url(settings)
    return OAuthMiddleware(
        app,
        resource=url,
        issuer=url,
        # the key set is read from the local key file: the server does not fetch from itself
        jwks=jwks(settings),
        algorithms=["RS256"],
        rules=RULES,
        public_paths=PUBLIC_PATHS,
        resource_name="aimiddleware reference server",
    )
