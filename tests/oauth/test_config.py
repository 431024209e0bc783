"""Options are validated once, at construction; secrets stay out of reprs."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette

from aimiddleware import ConfigurationError
from aimiddleware.oauth import DPoP, Introspection, OAuthMiddleware, ScopeRule

ISSUER = "https://auth.example.com"


def build(**options: Any) -> OAuthMiddleware:
    defaults: dict[str, Any] = {"resource": "https://api.example.com", "issuer": ISSUER}
    defaults.update(options)
    return OAuthMiddleware(Starlette(), **defaults)


@pytest.mark.parametrize(
    "options",
    [
        {"resource": "api.example.com"},
        {"resource": "https://api.example.com#x"},
        {"issuer": None},
        {"issuer": "not a url"},
        {"algorithms": ["HS256"]},
        {"algorithms": ["none"]},
        {"algorithms": []},
        {"algorithms": "RS256"},
        {"jwks_uri": "https://auth.example.com/jwks", "jwks": {"keys": []}},
        {"unavailable_status": 500},
        {"max_authorization_bytes": 10},
        {"cache_size": 0},
        {"leeway": -1},
        {"jwks_ttl": 0},
        {"default_scopes": ['bad"scope']},
        {"rules": ["/v1/models"]},
        {"introspection": "https://auth.example.com/introspect"},
        {"dpop": True},
    ],
)
def test_bad_options_raise_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        build(**options)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ScopeRule("v1/models"),
        lambda: ScopeRule("/v1/*/models"),
        lambda: ScopeRule("/v1/models", ['a"b']),
        lambda: ScopeRule("/health", ["x"], auth="public"),
        lambda: ScopeRule("/health", auth="maybe"),  # type: ignore[arg-type]
        lambda: ScopeRule("/v1/models", methods="GET"),
        lambda: DPoP(algorithms=["HS256"]),
        lambda: DPoP(nonce_secret=b"short"),
        lambda: Introspection(client_id="", client_secret="x"),
        lambda: Introspection(client_id="a", client_secret="b", auth_method="private_key_jwt"),  # type: ignore[arg-type]
    ],
)
def test_bad_parts_raise_configuration_error(make: Any) -> None:
    with pytest.raises(ConfigurationError):
        make()


def test_repr_hides_secrets() -> None:
    mw = build(introspection=Introspection(client_id="rs", client_secret="hunter2"))
    assert "hunter2" not in repr(mw)
    assert repr(mw) == (
        "OAuthMiddleware(resource='https://api.example.com', issuer='https://auth.example.com', "
        "credentials=['jwt', 'introspection'])"
    )
    assert "hunter2" not in repr(DPoP(nonce_secret=b"hunter2" * 3))


def test_rules_match_patterns_methods_and_order() -> None:
    models = ScopeRule("/v1/models*", ["models:read"], methods=["GET"])
    file = ScopeRule("/v1/files/{file_id}/content", "files:read")
    assert models.matches("/v1/models", "GET")
    assert models.matches("/v1/models/SmolLM2", "HEAD")
    assert not models.matches("/v1/models", "POST")
    assert not models.matches("/v2/models", "GET")
    assert file.matches("/v1/files/abc/content", "DELETE")
    assert not file.matches("/v1/files/a/b/content", "GET")
    assert ScopeRule("/a.b").matches("/a.b", "GET")
    assert not ScopeRule("/a.b").matches("/axb", "GET")
    assert file.required == ("files:read",)
