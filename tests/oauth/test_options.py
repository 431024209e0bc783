"""The options object, its groups, the renamed Authorization bound, and the options that had no
test of what they do."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from typing import Any

import pytest
from joserfc import jwk
from starlette.applications import Starlette

from aimiddleware import ConfigurationError, _config
from aimiddleware.oauth import (
    AccessOptions,
    ClaimOptions,
    JWTOptions,
    MetadataOptions,
    OAuthMiddleware,
    OAuthOptions,
    ScopeRule,
)

from .apps import RESOURCE, RULES, bearer, client_for, echo_app, middleware
from .issuer import Issuer, parse_challenges
from .test_introspection import active, introspection

pytestmark = pytest.mark.anyio

ISSUER = "https://auth.example.com"


# -- the options object -------------------------------------------------------------------------


def test_keywords_land_in_their_groups() -> None:
    mw = OAuthMiddleware(
        Starlette(),
        resource=RESOURCE,
        issuer=ISSUER,
        leeway=10.0,
        public_paths=["/health"],
        tier_claim="plan",
        resource_name="Test API",
        realm="api",
    )
    config = mw.config
    assert config.jwt == JWTOptions(issuer=ISSUER, leeway=10.0)
    assert config.access == AccessOptions(public_paths=("/health",))
    assert config.claims == ClaimOptions(tier_claim="plan")
    assert config.metadata == MetadataOptions(resource_name="Test API")
    assert (config.resource, config.realm) == (RESOURCE, "api")
    assert config == OAuthOptions.from_keywords(
        resource=RESOURCE, issuer=ISSUER, leeway=10.0, public_paths=["/health"],
        tier_claim="plan", resource_name="Test API", realm="api",
    )  # fmt: skip


async def test_an_options_object_configures_the_middleware(issuer: Issuer) -> None:
    options = OAuthOptions(
        resource=RESOURCE,
        jwt=JWTOptions(issuer=issuer.url),
        access=AccessOptions(rules=RULES, public_paths=["/health"]),
    )
    mw = OAuthMiddleware(echo_app(), config=options)
    assert mw.config is options
    async with client_for(mw) as client:
        ok = await client.post("/v1/chat/completions", headers=bearer(issuer.mint()), json={})
        anonymous = await client.post("/v1/chat/completions", json={})
        health = await client.get("/health")
    assert (ok.status_code, anonymous.status_code, health.status_code) == (200, 401, 200)


def test_config_and_keywords_at_once_is_an_error() -> None:
    options = OAuthOptions(resource=RESOURCE, jwt=JWTOptions(issuer=ISSUER))
    with pytest.raises(ConfigurationError, match="config= or options"):
        OAuthMiddleware(Starlette(), config=options, realm="api")


def test_a_group_and_one_of_its_keywords_at_once_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="leeway belong to jwt="):
        OAuthMiddleware(Starlette(), resource=RESOURCE, jwt=JWTOptions(issuer=ISSUER), leeway=5.0)


def test_options_are_frozen_and_normalised() -> None:
    options = OAuthOptions(
        resource=RESOURCE,
        jwt=JWTOptions(issuer=ISSUER, audiences=["https://a.test"]),
        access=AccessOptions(default_scopes="chat  models:read chat"),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.realm = "x"  # type: ignore[misc]
    assert options.jwt.audiences == ("https://a.test",)
    assert options.access.default_scopes == ("chat", "models:read")


@pytest.mark.parametrize(
    "make",
    [
        lambda: JWTOptions(leeway=-1),
        lambda: JWTOptions(verify_audience=1),  # type: ignore[arg-type]
        lambda: JWTOptions(audiences="https://a.test"),
        lambda: JWTOptions(issuer=ISSUER, unknown_kid_ttl=-1),
        lambda: AccessOptions(public_paths="/health"),
        lambda: ClaimOptions(scope_claims=[]),
        lambda: ClaimOptions(principal_claims=["azp"]),
        lambda: MetadataOptions(authorization_servers=["not a url"]),
        lambda: OAuthOptions(resource=RESOURCE),  # nothing to authenticate with
        lambda: OAuthOptions(resource=RESOURCE, jwt=JWTOptions(issuer=ISSUER), retry_after=-1),
        lambda: OAuthOptions(resource=RESOURCE, jwt=JWTOptions(issuer=ISSUER), cache_ttl=-1),
        lambda: OAuthOptions(resource=RESOURCE, jwt={"issuer": ISSUER}),  # type: ignore[arg-type]
    ],
)
def test_bad_groups_raise_configuration_error(make: Any) -> None:
    with pytest.raises(ConfigurationError):
        make()


def test_the_signature_lists_every_keyword_with_its_default() -> None:
    parameters = inspect.signature(OAuthMiddleware).parameters
    assert parameters["resource"].default is inspect.Parameter.empty
    assert parameters["leeway"].default == 30.0
    assert parameters["max_authorization_bytes"].default == 8192
    assert "max_header_bytes" not in parameters
    flat = {f.name for group in (JWTOptions, AccessOptions, ClaimOptions, MetadataOptions)
            for f in dataclasses.fields(group)}  # fmt: skip
    assert flat <= set(parameters)


# -- max_authorization_bytes (was max_header_bytes) ---------------------------------------------


async def _too_large(mw: OAuthMiddleware, size: int) -> bool:
    async with client_for(mw) as client:
        response = await client.get("/v1/models", headers=bearer("x" * (size - 7)))
    message: str = response.json()["error"]["message"]
    return response.status_code == 400 and "too large" in message


async def test_max_authorization_bytes_bounds_the_authorization_header() -> None:
    mw = middleware(None, issuer=ISSUER, max_authorization_bytes=300)
    assert await _too_large(mw, 301)
    assert not await _too_large(middleware(None, issuer=ISSUER, max_authorization_bytes=300), 300)
    assert not await _too_large(middleware(None, issuer=ISSUER), 301)  # 8192 by default


async def test_max_header_bytes_still_works_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_config, "_WARNED", set())
    with pytest.warns(DeprecationWarning, match="max_authorization_bytes") as caught:
        mw = middleware(None, issuer=ISSUER, max_header_bytes=300)
    assert len(caught) == 1
    assert mw.config.max_authorization_bytes == 300
    assert await _too_large(mw, 301)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        middleware(None, issuer=ISSUER, max_header_bytes=300)  # said once per process


def test_both_names_at_once_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_config, "_WARNED", set())
    with pytest.raises(ConfigurationError, match="max_header_bytes"):
        middleware(None, issuer=ISSUER, max_header_bytes=300, max_authorization_bytes=300)


# -- options whose effect had no test -----------------------------------------------------------


async def test_audiences_replace_the_resource_as_accepted_audience(issuer: Issuer) -> None:
    mw = middleware(issuer, audiences=["https://gateway.test"])
    async with client_for(mw) as client:
        other = await client.post(
            "/v1/chat/completions", json={}, headers=bearer(issuer.mint(aud="https://gateway.test"))
        )
        resource = await client.post("/v1/chat/completions", json={},
                                     headers=bearer(issuer.mint(aud=RESOURCE)))  # fmt: skip
    assert other.status_code == 200
    assert resource.status_code == 401
    assert "audience" in resource.json()["error"]["message"]


async def test_scope_claims_name_the_claims_read_for_scopes(issuer: Issuer) -> None:
    token = issuer.mint(scope=None, permissions="chat")
    async with client_for(middleware(issuer)) as client:
        default = await client.post("/v1/chat/completions", headers=bearer(token), json={})
    async with client_for(middleware(issuer, scope_claims=["permissions"])) as client:
        named = await client.post("/v1/chat/completions", headers=bearer(token), json={})
    assert default.status_code == 403
    assert named.status_code == 200
    assert named.json()["principal"]["scopes"] == ["chat"]


async def test_tier_claim_names_the_claim_read_for_the_tier(issuer: Issuer) -> None:
    token = issuer.mint(tier="free", plan="pro")
    tiers = []
    for options in ({}, {"tier_claim": "plan"}, {"tier_claim": None, "default_tier": "basic"}):
        async with client_for(middleware(issuer, **options)) as client:
            response = await client.post("/v1/chat/completions", headers=bearer(token), json={})
        tiers.append(response.json()["principal"]["tier"])
    assert tiers == ["free", "pro", "basic"]


async def test_resource_documentation_is_in_the_metadata_document() -> None:
    docs = "https://api.test/docs"
    mw = middleware(None, issuer=ISSUER, resource_documentation=docs)
    async with client_for(mw) as client:
        document = (await client.get("/.well-known/oauth-protected-resource")).json()
    assert document["resource_documentation"] == docs
    async with client_for(middleware(None, issuer=ISSUER)) as client:
        plain = (await client.get("/.well-known/oauth-protected-resource")).json()
    assert "resource_documentation" not in plain


async def test_serve_metadata_false_serves_no_document_and_names_none() -> None:
    async with client_for(middleware(None, issuer=ISSUER, serve_metadata=False)) as client:
        document = await client.get("/.well-known/oauth-protected-resource")
        refused = await client.post("/v1/chat/completions", json={})
    assert document.status_code == 401  # an ordinary protected path now
    challenge = parse_challenges(refused.headers.get_list("www-authenticate"))["Bearer"]
    assert "resource_metadata" not in challenge
    assert challenge["scope"] == "chat"


async def test_unknown_kid_ttl_is_how_long_an_unknown_kid_is_refused_without_a_fetch(
    issuer: Issuer,
) -> None:
    stranger = jwk.RSAKey.generate_key(2048, parameters={"kid": "stranger"})
    token = issuer.mint(key=stranger)
    fetches = []
    for ttl in (60.0, 0.0):
        issuer.jwks_fetches = 0
        async with client_for(middleware(issuer, jwks_cooldown=0, unknown_kid_ttl=ttl)) as client:
            for _ in range(3):
                response = await client.post("/v1/chat/completions", headers=bearer(token), json={})
                assert response.status_code == 401
        fetches.append(issuer.jwks_fetches)
    # the first request fetches the key set, the second fetches again for the kid it lacks and
    # remembers the kid as unknown for unknown_kid_ttl: the third fetches only with 0
    assert fetches == [2, 3]


async def test_cache_ttl_zero_validates_every_request_again(issuer: Issuer) -> None:
    active(issuer, "opaque-ttl")
    counts = []
    for options in ({}, {"cache_ttl": 0}):
        issuer.introspections = 0
        mw = middleware(issuer, introspection=introspection(), **options)
        async with client_for(mw) as client:
            for _ in range(3):
                response = await client.post("/v1/chat/completions", json={},
                                             headers=bearer("opaque-ttl"))  # fmt: skip
                assert response.status_code == 200
        counts.append(issuer.introspections)
    assert counts == [1, 3]


async def test_retry_after_is_the_retry_after_of_an_unavailable_answer(issuer: Issuer) -> None:
    issuer.jwks_down = True
    async with client_for(middleware(issuer, retry_after=17)) as client:
        response = await client.post("/v1/chat/completions", headers=bearer(issuer.mint()), json={})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "17"


def test_rules_keyword_takes_scope_rules() -> None:
    mw = middleware(None, issuer=ISSUER, rules=[ScopeRule("/x", "a b")])
    assert mw.config.access.rules[0].required == ("a", "b")
