"""RFC 9068 JWT access tokens against a real issuer: the happy path and the attack corpus."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import httpx
import pytest

from .apps import bearer, client_for, middleware
from .issuer import Issuer, b64url, forge, parse_challenges

pytestmark = pytest.mark.anyio


def assert_invalid_token(response: httpx.Response, description_part: str) -> None:
    assert response.status_code == 401
    body = response.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["param"] is None
    assert description_part in body["error"]["message"]
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["error"] == "invalid_token"
    assert description_part in challenge["error_description"]
    assert challenge["scope"] == "chat"
    assert challenge["resource_metadata"] == (
        "https://api.test/.well-known/oauth-protected-resource"
    )
    assert "principal" not in response.text


async def post_chat(issuer: Issuer, token: str, **options: Any) -> httpx.Response:
    async with client_for(middleware(issuer, **options)) as client:
        return await client.post("/v1/chat/completions", headers=bearer(token), json={})


async def test_valid_rs256_token_sets_the_principal(issuer: Issuer) -> None:
    token = issuer.mint(tier="agent", jti="tok-1")
    response = await post_chat(issuer, token)
    assert response.status_code == 200
    body = response.json()
    assert body["principal"] == {
        "id": f"sub:user-1@{issuer.url}",
        "subject": "user-1",
        "client_id": "agent-7",
        "scopes": ["chat", "models:read"],
        "tier": "agent",
        "token_id": "tok-1",
        "credential": "jwt",
    }
    annotations = body["annotations"]
    assert annotations["aimiddleware.auth.outcome"] == "authenticated"
    assert annotations["aimiddleware.auth.credential"] == "jwt"
    assert annotations["aimiddleware.auth.client_id"] == "agent-7"
    assert annotations["aimiddleware.auth.scopes"] == "chat models:read"
    # the token is nowhere in what the app can see
    assert token not in response.text
    assert token.split(".")[2] not in response.text


async def test_es256_token_is_accepted(issuer: Issuer) -> None:
    response = await post_chat(issuer, issuer.mint(key=issuer.ec))
    assert response.status_code == 200
    assert response.json()["principal"]["credential"] == "jwt"


async def test_application_at_jwt_typ_is_accepted(issuer: Issuer) -> None:
    token = issuer.mint(header={"typ": "application/at+jwt"})
    assert (await post_chat(issuer, token)).status_code == 200


async def test_principal_without_client_and_tier_to_default(issuer: Issuer) -> None:
    token = issuer.mint(client_id=None)
    response = await post_chat(issuer, token, default_tier="free")
    assert response.status_code == 200
    principal = response.json()["principal"]
    assert (principal["id"], principal["client_id"], principal["tier"]) == (
        f"sub:user-1@{issuer.url}",
        None,
        "free",
    )


async def test_a_token_without_sub_is_its_client(issuer: Issuer) -> None:
    response = await post_chat(issuer, issuer.mint(sub=None, azp="agent-8", client_id=None))
    assert response.status_code == 200
    principal = response.json()["principal"]
    assert (principal["id"], principal["client_id"], principal["subject"]) == (
        f"client:agent-8@{issuer.url}",
        "agent-8",
        None,
    )


async def test_scp_list_claim_is_read(issuer: Issuer) -> None:
    token = issuer.mint(scope=None, scp=["chat"])
    response = await post_chat(issuer, token)
    assert response.status_code == 200
    assert response.json()["principal"]["scopes"] == ["chat"]


# -- the attack corpus -------------------------------------------------------------------------


async def test_alg_none_refused(issuer: Issuer) -> None:
    token = forge({"alg": "none", "typ": "at+jwt", "kid": "rsa-1"}, issuer.claims())
    response = await post_chat(issuer, token)
    assert_invalid_token(response, "algorithm is not allowed")
    assert issuer.jwks_fetches == 0  # refused before any key was looked up


async def test_hs256_signed_with_the_rsa_public_key_refused(issuer: Issuer) -> None:
    public_pem = issuer.rsa.as_pem(private=False)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": "rsa-1"}
    head = b64url(b'{"alg":"HS256","typ":"at+jwt","kid":"rsa-1"}')
    body = b64url(b'{"iss":"%s","aud":"https://api.test","sub":"x","exp":%d}' % (
        issuer.url.encode(), int(time.time()) + 600))  # fmt: skip
    signature = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    token = f"{head}.{body}.{b64url(signature)}"
    assert header  # the header above, spelled out
    response = await post_chat(issuer, token)
    assert_invalid_token(response, "algorithm is not allowed")


async def test_algorithm_outside_the_allow_list_refused(issuer: Issuer) -> None:
    token = issuer.mint(key=issuer.ec)
    response = await post_chat(issuer, token, algorithms=["RS256"])
    assert_invalid_token(response, "algorithm is not allowed")


async def test_expired_refused(issuer: Issuer) -> None:
    now = int(time.time())
    token = issuer.mint(iat=now - 3600, exp=now - 120)
    assert_invalid_token(await post_chat(issuer, token, leeway=30), "expired")


async def test_expired_within_leeway_accepted(issuer: Issuer) -> None:
    now = int(time.time())
    token = issuer.mint(iat=now - 3600, exp=now - 10)
    assert (await post_chat(issuer, token, leeway=30)).status_code == 200


async def test_not_yet_valid_refused(issuer: Issuer) -> None:
    token = issuer.mint(nbf=int(time.time()) + 300)
    assert_invalid_token(await post_chat(issuer, token), "not valid yet")


async def test_issued_in_the_future_refused(issuer: Issuer) -> None:
    token = issuer.mint(iat=int(time.time()) + 300)
    assert_invalid_token(await post_chat(issuer, token), "issued in the future")


async def test_missing_exp_refused(issuer: Issuer) -> None:
    token = issuer.mint(exp=None)
    assert_invalid_token(await post_chat(issuer, token), "no valid exp")


async def test_wrong_iss_refused(issuer: Issuer) -> None:
    token = issuer.mint(iss="https://evil.example")
    assert_invalid_token(await post_chat(issuer, token), "issuer is not trusted")


async def test_wrong_aud_refused(issuer: Issuer) -> None:
    token = issuer.mint(aud="https://other-api.test")
    assert_invalid_token(await post_chat(issuer, token), "audience")


async def test_missing_aud_refused(issuer: Issuer) -> None:
    token = issuer.mint(aud=None)
    assert_invalid_token(await post_chat(issuer, token), "audience")


async def test_audience_list_containing_the_resource_accepted(issuer: Issuer) -> None:
    token = issuer.mint(aud=["https://other-api.test", "https://api.test"])
    assert (await post_chat(issuer, token)).status_code == 200


async def test_audience_check_can_be_turned_off(issuer: Issuer) -> None:
    token = issuer.mint(aud=None)
    assert (await post_chat(issuer, token, verify_audience=False)).status_code == 200


async def test_missing_typ_refused(issuer: Issuer) -> None:
    token = issuer.mint(header={"typ": None})
    assert_invalid_token(await post_chat(issuer, token), "typ must be at+jwt")


async def test_plain_jwt_typ_refused(issuer: Issuer) -> None:
    token = issuer.mint(header={"typ": "JWT"})
    assert_invalid_token(await post_chat(issuer, token), "typ must be at+jwt")


async def test_missing_typ_accepted_for_legacy_issuers_when_opted_out(issuer: Issuer) -> None:
    token = issuer.mint(header={"typ": None})
    assert (await post_chat(issuer, token, require_typ=False)).status_code == 200


async def test_unknown_kid_refused(issuer: Issuer) -> None:
    from joserfc import jwk

    stranger = jwk.RSAKey.generate_key(2048, parameters={"kid": "stranger"})
    token = issuer.mint(key=stranger)
    assert_invalid_token(await post_chat(issuer, token), "unknown key")


async def test_known_kid_signed_by_another_key_refused(issuer: Issuer) -> None:
    from joserfc import jwk

    impostor = jwk.RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    token = issuer.mint(key=impostor)
    assert_invalid_token(await post_chat(issuer, token), "signature is invalid")


async def test_tampered_payload_refused(issuer: Issuer) -> None:
    head, _, signature = issuer.mint(scope="chat").split(".")
    forged_body = b64url(
        b'{"iss":"%s","aud":"https://api.test","sub":"admin","client_id":"agent-7",'
        b'"scope":"chat admin","exp":%d}' % (issuer.url.encode(), int(time.time()) + 600)
    )
    response = await post_chat(issuer, f"{head}.{forged_body}.{signature}")
    assert_invalid_token(response, "signature is invalid")


async def test_tampered_signature_refused(issuer: Issuer) -> None:
    head, body, signature = issuer.mint().split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    assert_invalid_token(await post_chat(issuer, f"{head}.{body}.{flipped}"), "signature")


async def test_token_in_query_refused(issuer: Issuer) -> None:
    token = issuer.mint()
    async with client_for(middleware(issuer)) as client:
        response = await client.post(f"/v1/chat/completions?access_token={token}", json={})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["error"] == "invalid_request"
    assert "query string" in challenge["error_description"]


async def test_16kb_authorization_header_refused_fast(issuer: Issuer) -> None:
    huge = "Bearer " + "A" * 16 * 1024
    async with client_for(middleware(issuer)) as client:
        response = await client.post(
            "/v1/chat/completions", headers={"authorization": huge}, json={}
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["error"] == "invalid_request"
    assert "too large" in challenge["error_description"]
    assert issuer.jwks_fetches == 0
    assert issuer.metadata_fetches == 0


async def test_garbage_authorization_header_refused(issuer: Issuer) -> None:
    async with client_for(middleware(issuer)) as client:
        response = await client.post(
            "/v1/chat/completions", headers={"authorization": "Bearer a b\x01c"}, json={}
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert issuer.jwks_fetches == 0


async def test_not_a_jwt_refused_without_introspection(issuer: Issuer) -> None:
    assert_invalid_token(await post_chat(issuer, "opaque-token-value"), "not a JWT")


async def test_jwks_down_is_503_not_500(issuer: Issuer) -> None:
    issuer.jwks_down = True
    token = issuer.mint()
    async with client_for(middleware(issuer)) as client:
        response = await client.post("/v1/chat/completions", headers=bearer(token), json={})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == {
        "message": "the issuer's signing keys are unavailable",
        "type": "server_error",
        "param": None,
        "code": "auth_unavailable",
    }
    assert "www-authenticate" not in response.headers


async def test_jwks_down_can_answer_401(issuer: Issuer) -> None:
    issuer.jwks_down = True
    response = await post_chat(issuer, issuer.mint(), unavailable_status=401)
    assert response.status_code == 401
    assert response.headers["retry-after"] == "5"
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["error"] == "invalid_token"


async def test_jwks_down_logs_one_line_without_the_token(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.jwks_down = True
    token = issuer.mint()
    async with client_for(middleware(issuer)) as client:
        for _ in range(5):
            response = await client.post("/v1/chat/completions", headers=bearer(token), json={})
            assert response.status_code == 503
    lines = [r for r in caplog.records if r.name == "aimiddleware.oauth"]
    assert len(lines) == 1
    assert "JWKS fetch failed" in lines[0].getMessage()
    assert token not in caplog.text
    assert issuer.jwks_fetches == 1  # the cooldown keeps the outage from being hammered


async def test_flood_of_unknown_kids_costs_at_most_one_fetch(issuer: Issuer) -> None:
    from joserfc import jwk

    stranger = jwk.RSAKey.generate_key(2048)
    mw = middleware(issuer)
    async with client_for(mw) as client:
        # warm: the key set is loaded once
        assert (await client.post("/v1/chat/completions", headers=bearer(issuer.mint()),
                                  json={})).status_code == 200  # fmt: skip
        assert issuer.jwks_fetches == 1
        tokens = [issuer.mint(key=stranger, header={"kid": f"made-up-{i}"}) for i in range(100)]
        responses = await asyncio.gather(
            *(client.post("/v1/chat/completions", headers=bearer(t), json={}) for t in tokens)
        )
    assert {r.status_code for r in responses} == {401}
    assert issuer.jwks_fetches <= 2  # the warm-up fetch, then at most one for the flood


async def test_100_concurrent_requests_with_one_unknown_kid_fetch_at_most_once(
    issuer: Issuer,
) -> None:
    from joserfc import jwk

    rotated = jwk.RSAKey.generate_key(2048, parameters={"kid": "rotated"})
    token = issuer.mint(key=rotated)
    mw = middleware(issuer, jwks_cooldown=0.2)
    async with client_for(mw) as client:
        assert (await client.post("/v1/chat/completions", headers=bearer(issuer.mint()),
                                  json={})).status_code == 200  # fmt: skip
        issuer.extra_keys.append(rotated)  # the issuer rotates in a new key
        await asyncio.sleep(0.25)  # past the refetch cooldown
        responses = await asyncio.gather(
            *(client.post("/v1/chat/completions", headers=bearer(token), json={})
              for _ in range(100))
        )  # fmt: skip
    assert {r.status_code for r in responses} == {200}
    assert issuer.jwks_fetches == 2  # warm-up + exactly one refetch for the rotated kid


async def test_last_good_key_set_kept_when_refetch_fails(issuer: Issuer) -> None:
    mw = middleware(issuer, jwks_ttl=0.2, jwks_cooldown=0)
    async with client_for(mw) as client:
        assert (await client.post("/v1/chat/completions", headers=bearer(issuer.mint()),
                                  json={})).status_code == 200  # fmt: skip
        issuer.jwks_down = True
        await asyncio.sleep(0.3)  # the key set is stale now, and the refetch fails
        response = await client.post("/v1/chat/completions", headers=bearer(issuer.mint()), json={})
    assert response.status_code == 200
    assert issuer.jwks_fetches == 2


async def test_validation_is_cached_by_token_hash(issuer: Issuer) -> None:
    token = issuer.mint()
    mw = middleware(issuer)
    async with client_for(mw) as client:
        for _ in range(3):
            r = await client.post("/v1/chat/completions", headers=bearer(token), json={})
            assert r.status_code == 200
    cache = mw._auth._cache
    assert len(cache) == 1
    assert hashlib.sha256(token.encode()).digest() in cache
    assert all(token not in repr(v.principal) for v in cache.values())


async def test_cached_validation_never_outlives_exp(issuer: Issuer) -> None:
    token = issuer.mint(exp=int(time.time()) + 2)
    mw = middleware(issuer, leeway=0)
    async with client_for(mw) as client:
        r = await client.post("/v1/chat/completions", headers=bearer(token), json={})
        assert r.status_code == 200
        await asyncio.sleep(2.2)
        r = await client.post("/v1/chat/completions", headers=bearer(token), json={})
    assert_invalid_token(r, "expired")


async def test_static_jwks_needs_no_fetch(issuer: Issuer) -> None:
    response = await post_chat(issuer, issuer.mint(), jwks=issuer.jwks())
    assert response.status_code == 200
    assert issuer.jwks_fetches == 0
    assert issuer.metadata_fetches == 0


async def test_explicit_jwks_uri_skips_discovery(issuer: Issuer) -> None:
    response = await post_chat(issuer, issuer.mint(), jwks_uri=f"{issuer.url}/jwks")
    assert response.status_code == 200
    assert issuer.metadata_fetches == 0
    assert issuer.jwks_fetches == 1


async def test_discovery_with_a_mismatched_issuer_is_refused(issuer: Issuer) -> None:
    # the metadata found for this issuer names issuer.url, not the configured one
    other = issuer.url + "/"
    token = issuer.mint(iss=other)
    async with client_for(middleware(None, issuer=other)) as client:
        response = await client.post("/v1/chat/completions", headers=bearer(token), json={})
    assert response.status_code == 503
    assert issuer.metadata_fetches == 1  # the RFC 8414 document; then the OIDC one is absent
    assert issuer.jwks_fetches == 0


async def test_jwks_outage_at_start_recovers_after_the_cooldown(issuer: Issuer) -> None:
    issuer.jwks_down = True
    token = issuer.mint()
    # the cooldown is long enough that the second request lands inside it even when a loaded
    # machine takes most of a second over the first one
    async with client_for(middleware(issuer, jwks_cooldown=3.0)) as client:
        down = await client.post("/v1/chat/completions", headers=bearer(token), json={})
        issuer.jwks_down = False
        still_cooling = await client.post("/v1/chat/completions", headers=bearer(token), json={})
        await asyncio.sleep(3.05)
        recovered = await client.post("/v1/chat/completions", headers=bearer(token), json={})
    assert (down.status_code, still_cooling.status_code, recovered.status_code) == (503, 503, 200)
    assert issuer.jwks_fetches == 2


async def test_refusal_is_annotated_without_the_token(issuer: Issuer) -> None:
    from aimiddleware.context import get_annotations, get_principal

    token = issuer.mint(scope="models:read")
    mw = middleware(issuer, jwks=issuer.jwks())
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await mw(scope, receive, send)
    assert sent[0]["status"] == 403
    annotations = get_annotations(scope)
    assert annotations["aimiddleware.auth.outcome"] == "refused"
    assert annotations["aimiddleware.auth.status"] == 403
    assert annotations["aimiddleware.auth.error"] == "insufficient_scope"
    assert annotations["aimiddleware.auth.scopes"] == "models:read"
    assert get_principal(scope) is None  # a refused caller is not handed to the app
    assert all(token not in str(v) for v in annotations.values())
    assert all(token.encode() not in m.get("body", b"") for m in sent)


async def test_ed25519_token_is_accepted(issuer: Issuer) -> None:
    from joserfc import jwk

    ed = jwk.OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})
    issuer.extra_keys.append(ed)
    token = issuer.mint(key=ed, header={"alg": "Ed25519"})
    assert (await post_chat(issuer, token)).status_code == 200


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(issuer: Issuer) -> None:
    from aimiddleware.oauth._jwks import Coalesced

    shared = Coalesced()
    finished = asyncio.Event()

    async def fetch() -> str:
        await asyncio.sleep(0.1)
        finished.set()
        return "keys"

    first = asyncio.ensure_future(shared.run(fetch))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(shared.run(fetch))
    await asyncio.sleep(0.01)
    first.cancel()  # this client went away
    assert await second == "keys"
    assert finished.is_set()


async def test_oidc_discovery_is_the_fallback(issuer: Issuer) -> None:
    provider = f"{issuer.url}/oidc"
    async with client_for(middleware(None, issuer=provider)) as client:
        response = await client.post(
            "/v1/chat/completions", headers=bearer(issuer.mint(iss=provider)), json={}
        )
    assert response.status_code == 200
    assert issuer.metadata_fetches == 1  # the RFC 8414 location 404s, OIDC Discovery answers
    assert issuer.jwks_fetches == 1
