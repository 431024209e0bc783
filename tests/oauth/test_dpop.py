"""DPoP (RFC 9449): proofs built by a real client key, replay cache in memory and in Redis."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from joserfc import jwk, jws

from aimiddleware.oauth import DPoP
from aimiddleware.oauth._dpop import access_token_hash
from aimiddleware.stores import store_from_url

from .apps import bearer, client_for, middleware
from .issuer import Issuer, parse_challenges

pytestmark = pytest.mark.anyio

URL = "https://api.test/v1/chat/completions"


class Client:
    """A DPoP client: its own key pair, a proof per request."""

    def __init__(self) -> None:
        self.key = jwk.ECKey.generate_key("P-256")
        self.jkt = jwk.thumbprint(self.key.as_dict(private=False))

    def proof(self, token: str, *, htm: str = "POST", htu: str = URL, **overrides: Any) -> str:
        claims: dict[str, Any] = {
            "jti": uuid.uuid4().hex,
            "htm": htm,
            "htu": htu,
            "iat": int(time.time()),
            "ath": access_token_hash(token),
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.as_dict(private=False)}
        import json

        return jws.serialize_compact(header, json.dumps(claims), self.key, algorithms=["ES256"])


def dpop_headers(token: str, proof: str) -> dict[str, str]:
    return {"authorization": f"DPoP {token}", "dpop": proof}


async def post(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/v1/chat/completions", headers=headers, json={})


def assert_dpop_error(response: httpx.Response, error: str, part: str) -> None:
    assert response.status_code == 401
    challenges = parse_challenges(response.headers.get_list("www-authenticate"))
    assert challenges["DPoP"]["error"] == error
    assert part in challenges["DPoP"]["error_description"]
    assert "error" not in challenges["Bearer"]
    assert response.json()["error"]["code"] == error


async def test_bound_token_with_a_valid_proof_is_accepted(issuer: Issuer) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        response = await post(client, dpop_headers(token, me.proof(token)))
    assert response.status_code == 200
    assert response.json()["annotations"]["aimiddleware.auth.dpop"] is True


async def test_replayed_proof_is_refused(issuer: Issuer) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    proof = me.proof(token)
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        first = await post(client, dpop_headers(token, proof))
        second = await post(client, dpop_headers(token, proof))
    assert first.status_code == 200
    assert_dpop_error(second, "invalid_dpop_proof", "already used")


@pytest.mark.redis
async def test_replay_cache_in_redis_is_shared_by_workers(issuer: Issuer, redis_url: str) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    proof = me.proof(token)
    async with store_from_url(redis_url) as one, store_from_url(redis_url) as two:
        # two middlewares = two workers, each with its own connection to the same Redis
        async with client_for(middleware(issuer, dpop=DPoP(store=one))) as a:
            assert (await post(a, dpop_headers(token, proof))).status_code == 200
        async with client_for(middleware(issuer, dpop=DPoP(store=two))) as b:
            replay = await post(b, dpop_headers(token, proof))
    assert_dpop_error(replay, "invalid_dpop_proof", "already used")


async def test_replay_store_down_is_503(
    issuer: Issuer, caplog: pytest.LogCaptureFixture, dead_port: int
) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    # a real Redis client towards a port where nothing listens
    down = store_from_url(f"redis://127.0.0.1:{dead_port}/0", timeout=0.5)
    async with down, client_for(middleware(issuer, dpop=DPoP(store=down))) as client:
        response = await post(client, dpop_headers(token, me.proof(token)))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "auth_unavailable"
    lines = [r.getMessage() for r in caplog.records if r.name == "aimiddleware.oauth"]
    assert len(lines) == 1
    assert "replay cache unavailable" in lines[0]


@pytest.mark.parametrize(
    ("overrides", "part"),
    [
        ({"htm": "GET"}, "htm"),
        ({"htu": "https://api.test/v1/embeddings"}, "htu"),
        ({"htu": "https://evil.test/v1/chat/completions"}, "htu"),
        ({"iat": int(time.time()) - 600}, "iat"),
        ({"iat": int(time.time()) + 600}, "iat"),
        ({"ath": "x" * 43}, "ath"),
        ({"ath": None}, "ath"),
        ({"jti": None}, "jti"),
    ],
    ids=["wrong-htm", "wrong-path", "wrong-host", "old", "future", "wrong-ath", "no-ath", "no-jti"],
)
async def test_bad_proof_claims_are_refused(
    issuer: Issuer, overrides: dict[str, Any], part: str
) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    proof = me.proof(token, **overrides)
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        response = await post(client, dpop_headers(token, proof))
    assert_dpop_error(response, "invalid_dpop_proof", part)


async def test_htu_ignores_query_case_and_default_port(issuer: Issuer) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        proof = me.proof(token, htu="HTTPS://API.TEST:443/v1/chat/completions")
        response = await client.post(
            "/v1/chat/completions?x=1", headers=dpop_headers(token, proof), json={}
        )
    assert response.status_code == 200


async def test_proof_signed_by_another_key_than_the_binding_is_refused(issuer: Issuer) -> None:
    me, thief = Client(), Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        response = await post(client, dpop_headers(token, thief.proof(token)))
    assert response.status_code == 401
    challenges = parse_challenges(response.headers.get_list("www-authenticate"))
    assert challenges["DPoP"]["error"] == "invalid_token"
    assert "does not match" in challenges["DPoP"]["error_description"]
    assert "error" not in challenges["Bearer"]


async def test_dpop_bound_token_presented_as_bearer_is_refused(issuer: Issuer) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        response = await post(client, bearer(token))
    assert response.status_code == 401
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["error"] == "invalid_token"
    assert "presented as Bearer" in challenge["error_description"]


async def test_dpop_bound_token_as_bearer_is_refused_even_when_cached(issuer: Issuer) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        assert (await post(client, dpop_headers(token, me.proof(token)))).status_code == 200
        assert (await post(client, bearer(token))).status_code == 401


async def test_unbound_token_with_the_dpop_scheme_is_refused(issuer: Issuer) -> None:
    me = Client()
    token = issuer.mint()
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        response = await post(client, dpop_headers(token, me.proof(token)))
    assert response.status_code == 401
    assert "not DPoP-bound" in response.json()["error"]["message"]


async def test_missing_proof_is_refused(issuer: Issuer) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        response = await post(client, {"authorization": f"DPoP {token}"})
    assert_dpop_error(response, "invalid_dpop_proof", "exactly one")


async def test_proof_with_a_private_key_or_hmac_is_refused(issuer: Issuer) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    import json

    claims = json.dumps({"jti": "j", "htm": "POST", "htu": URL, "iat": int(time.time()),
                         "ath": access_token_hash(token)})  # fmt: skip
    leaked = jws.serialize_compact(
        {"typ": "dpop+jwt", "alg": "ES256", "jwk": me.key.as_dict(private=True)},
        claims,
        me.key,
        algorithms=["ES256"],
    )
    secret = jwk.OctKey.generate_key(256)
    hmac_proof = jws.serialize_compact(
        {"typ": "dpop+jwt", "alg": "HS256", "jwk": me.key.as_dict(private=False)},
        claims,
        secret,
        algorithms=["HS256"],
    )
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        private = await post(client, dpop_headers(token, leaked))
        hmac_ = await post(client, dpop_headers(token, hmac_proof))
    assert_dpop_error(private, "invalid_dpop_proof", "public jwk")
    assert_dpop_error(hmac_, "invalid_dpop_proof", "algorithm")


async def test_nonce_is_demanded_then_accepted(issuer: Issuer) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    async with client_for(middleware(issuer, dpop=DPoP(nonce_secret=b"n" * 32))) as client:
        first = await post(client, dpop_headers(token, me.proof(token)))
        assert_dpop_error(first, "use_dpop_nonce", "nonce")
        nonce = first.headers["dpop-nonce"]
        second = await post(client, dpop_headers(token, me.proof(token, nonce=nonce)))
        tampered = nonce[:-2] + ("AA" if not nonce.endswith("AA") else "BB")
        forged = await post(client, dpop_headers(token, me.proof(token, nonce=tampered)))
    assert second.status_code == 200
    assert forged.status_code == 401
    assert forged.headers["dpop-nonce"] == nonce


async def test_required_dpop_refuses_bearer_tokens(issuer: Issuer) -> None:
    async with client_for(middleware(issuer, dpop=DPoP(required=True))) as client:
        response = await post(client, bearer(issuer.mint()))
    assert response.status_code == 401
    challenges = parse_challenges(response.headers.get_list("www-authenticate"))
    assert list(challenges) == ["DPoP"]
    assert challenges["DPoP"]["error"] == "invalid_token"


async def test_dpop_scheme_without_dpop_configured_is_unsupported(issuer: Issuer) -> None:
    token = issuer.mint()
    async with client_for(middleware(issuer)) as client:
        response = await post(client, {"authorization": f"DPoP {token}", "dpop": "x.y.z"})
    assert response.status_code == 401
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert "error" not in challenge


@pytest.mark.cluster
async def test_replay_cache_on_a_redis_cluster(issuer: Issuer, redis_cluster: Any) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    proof = me.proof(token)
    store = store_from_url(redis_cluster.url)
    async with store, client_for(middleware(issuer, dpop=DPoP(store=store))) as client:
        first = await post(client, dpop_headers(token, proof))
        replay = await post(client, dpop_headers(token, proof))
    assert first.status_code == 200
    assert_dpop_error(replay, "invalid_dpop_proof", "already used")
