"""OAuthMiddleware configurations: an RS256 JWT with cached keys, and an API key.

The issuer's key pair lives in a file in the temp directory, created by whichever process
imports this module first (the harness, before it starts any server), so the token the load
generator sends and the key set the server trusts match. The server gets that key set as a
static in-process JWKS (``jwks=``): no HTTP fetch is measured, as with a warm JWKS cache.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .apps import Config, bare_app

_KEY_FILE = Path(tempfile.gettempdir()) / "aimw-bench-oauth-rs256.json"
_RESOURCE = "https://bench.local"
_ISSUER = "https://issuer.bench.local"
# not a secret: a fixed benchmark key, so both processes agree without sharing state
_API_KEY = "sk-bench.benchmark-secret-that-is-long-enough-0123456789"


def _private_key() -> Any:
    from joserfc import jwk

    if not _KEY_FILE.exists():
        key = jwk.RSAKey.generate_key(2048, parameters={"kid": "bench-1"})
        tmp = _KEY_FILE.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(key.as_dict(private=True)))
        os.replace(tmp, _KEY_FILE)
    return jwk.import_key(json.loads(_KEY_FILE.read_text()))


def _token() -> str:
    from joserfc import jwt

    now = int(time.time())
    claims = {
        "iss": _ISSUER,
        "aud": _RESOURCE,
        "sub": "bench-user",
        "client_id": "bench-agent",
        "scope": "chat",
        "iat": now,
        "exp": now + 6 * 3600,
        "jti": "bench",
    }
    header = {"alg": "RS256", "typ": "at+jwt", "kid": "bench-1"}
    return jwt.encode(header, claims, _private_key(), algorithms=["RS256"])


def _rules() -> list[Any]:
    from aimiddleware.oauth import ScopeRule

    return [ScopeRule("/v1/chat/completions", ["chat"], methods=["POST"])]


def jwt_app() -> Any:
    from aimiddleware.oauth import OAuthMiddleware

    public = {"keys": [_private_key().as_dict(private=False)]}
    return OAuthMiddleware(
        bare_app(), resource=_RESOURCE, issuer=_ISSUER, jwks=public, rules=_rules()
    )


def api_key_app() -> Any:
    from aimiddleware.oauth import APIKey, APIKeys, OAuthMiddleware

    keys = APIKeys([APIKey(id="bench", key_hash=APIKeys.hash(_API_KEY), scopes=["chat"])])
    return OAuthMiddleware(bare_app(), resource=_RESOURCE, api_keys=keys, rules=_rules())


def _configs() -> list[Config]:
    try:
        token = _token()
    except ImportError:  # the oauth extra is missing: nothing to measure
        return []
    return [
        Config(
            "oauth:jwt-rs256",
            jwt_app,
            group="oauth",
            headers={"Authorization": f"Bearer {token}"},
            description="RS256 at+jwt, static JWKS, validation cached by token hash",
        ),
        Config(
            "oauth:api-key",
            api_key_app,
            group="oauth",
            headers={"Authorization": f"Bearer {_API_KEY}"},
            description="API key: SHA-256 + constant-time compare per request",
        ),
    ]


CONFIGS = _configs()
