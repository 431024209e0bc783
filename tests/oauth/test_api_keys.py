"""API keys: hashed records, constant-time comparison, principal and tier."""

from __future__ import annotations

import pytest

from aimiddleware import ConfigurationError
from aimiddleware.oauth import APIKey, APIKeys, OAuthMiddleware

from .apps import RESOURCE, RULES, bearer, client_for, echo_app, middleware
from .issuer import Issuer, parse_challenges

pytestmark = pytest.mark.anyio


def keys() -> tuple[str, str, APIKeys]:
    agent_key, agent = APIKeys.generate("agent-7", scopes=["chat", "models:read"], tier="agent")
    reader_key, reader = APIKeys.generate("reader", scopes="models:read", tier="free")
    return agent_key, reader_key, APIKeys([agent, reader])


async def test_api_key_sets_principal_and_tier() -> None:
    agent_key, _, api_keys = keys()
    mw = OAuthMiddleware(echo_app(), resource=RESOURCE, api_keys=api_keys, rules=RULES)
    async with client_for(mw) as client:
        response = await client.post("/v1/chat/completions", headers=bearer(agent_key), json={})
    assert response.status_code == 200
    principal = response.json()["principal"]
    assert principal["id"] == "key:agent-7"  # API keys have a namespace of their own
    assert principal["tier"] == "agent"
    assert principal["credential"] == "api_key"
    assert principal["scopes"] == ["chat", "models:read"]
    assert response.json()["annotations"]["aimiddleware.auth.credential"] == "api_key"
    assert agent_key not in response.text


async def test_api_key_scopes_are_enforced() -> None:
    _, reader_key, api_keys = keys()
    mw = OAuthMiddleware(echo_app(), resource=RESOURCE, api_keys=api_keys, rules=RULES)
    async with client_for(mw) as client:
        allowed = await client.get("/v1/models", headers=bearer(reader_key))
        refused = await client.post("/v1/chat/completions", headers=bearer(reader_key), json={})
    assert allowed.status_code == 200
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"


async def test_wrong_secret_for_a_known_id_is_401() -> None:
    agent_key, _, api_keys = keys()
    forged = agent_key[:-4] + ("AAAA" if not agent_key.endswith("AAAA") else "BBBB")
    mw = OAuthMiddleware(echo_app(), resource=RESOURCE, api_keys=api_keys)
    async with client_for(mw) as client:
        response = await client.get("/v1/models", headers=bearer(forged))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["error"] == "invalid_token"


async def test_unknown_id_is_401() -> None:
    _, _, api_keys = keys()
    mw = OAuthMiddleware(echo_app(), resource=RESOURCE, api_keys=api_keys)
    async with client_for(mw) as client:
        response = await client.get("/v1/models", headers=bearer("sk-nobody.secret"))
    assert response.status_code == 401


async def test_api_keys_and_jwts_side_by_side(issuer: Issuer) -> None:
    agent_key, _, api_keys = keys()
    async with client_for(middleware(issuer, api_keys=api_keys)) as client:
        by_key = await client.post("/v1/chat/completions", headers=bearer(agent_key), json={})
        by_jwt = await client.post("/v1/chat/completions", headers=bearer(issuer.mint()), json={})
    assert by_key.json()["principal"]["credential"] == "api_key"
    assert by_jwt.json()["principal"]["credential"] == "jwt"


def test_records_hold_only_the_hash() -> None:
    key, record = APIKeys.generate("agent-7", scopes=["chat"])
    assert key not in repr(record)
    assert key.split(".")[-1] not in record.key_hash
    assert record.key_hash.startswith("sha256:")
    assert APIKeys([record]).lookup(key) is record
    assert repr(APIKeys([record])) == "APIKeys(1 keys, prefix='sk-')"


def test_lookup_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    key, record = APIKeys.generate("agent-7")
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    store = APIKeys([record])
    assert store.lookup(key) is record
    assert store.lookup("sk-unknown.x") is None  # an unknown id is compared too
    assert len(calls) == 2


def test_bad_records_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        APIKey(id="a", key_hash="md5:abc")
    with pytest.raises(ConfigurationError):
        APIKey(id="a", key_hash="sha256:" + "z" * 64)
    with pytest.raises(ConfigurationError):
        APIKey(id="a b", key_hash="sha256:" + "0" * 64)
    _, record = APIKeys.generate("dup")
    with pytest.raises(ConfigurationError):
        APIKeys([record, record])
    with pytest.raises(ConfigurationError):
        APIKeys([record], prefix="eyJ")
