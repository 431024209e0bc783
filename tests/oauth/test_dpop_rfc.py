"""DPoP requests are refused in the DPoP challenge, and htu is the resource's own URL."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from aimiddleware._urls import normalize_url
from aimiddleware.oauth import DPoP

from .apps import RESOURCE, client_for, middleware
from .issuer import Issuer, parse_challenges
from .test_dpop import Client, dpop_headers, post

pytestmark = pytest.mark.anyio


def challenges(response: httpx.Response) -> dict[str, dict[str, str]]:
    return parse_challenges(response.headers.get_list("www-authenticate"))


@pytest.mark.parametrize("case", ["expired", "unbound", "other-key", "scope", "malformed"])
async def test_errors_of_dpop_requests_are_in_the_dpop_challenge(issuer: Issuer, case: str) -> None:
    me, thief = Client(), Client()
    bound = issuer.mint(cnf={"jkt": me.jkt})
    token, signer, status, error = {
        "expired": (issuer.mint(cnf={"jkt": me.jkt}, exp=1), me, 401, "invalid_token"),
        "unbound": (issuer.mint(), me, 401, "invalid_token"),
        "other-key": (bound, thief, 401, "invalid_token"),
        "scope": (
            issuer.mint(cnf={"jkt": me.jkt}, scope="models:read"),
            me,
            403,
            "insufficient_scope",
        ),
        "malformed": ("not a token", me, 400, "invalid_request"),
    }[case]
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        response = await post(client, dpop_headers(token, signer.proof(token)))
    assert response.status_code == status
    found = challenges(response)
    assert found["DPoP"]["error"] == error
    assert "algs" in found["DPoP"]
    assert "error" not in found.get("Bearer", {})


async def test_a_forged_host_does_not_make_a_proof_for_another_origin_acceptable(
    issuer: Issuer,
) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    # a proof made for another server, replayed here with that server's name as Host
    proof = me.proof(token, htu="https://evil.test/v1/chat/completions")
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        headers = {**dpop_headers(token, proof), "host": "evil.test"}
        response = await post(client, headers)
    assert response.status_code == 401
    assert challenges(response)["DPoP"]["error"] == "invalid_dpop_proof"
    assert "htu" in challenges(response)["DPoP"]["error_description"]


@pytest.mark.parametrize(
    "htu",
    [
        "HTTPS://API.TEST:443/v1/chat/completions",
        "https://api.test/v1/./chat/x/../completions",
        "https://api.test/v1/%63hat/completions",
        "https://api.test:/v1/chat/completions?stream=1#frag",
    ],
    ids=["case-and-port", "dot-segments", "unreserved-percent", "empty-port-query-fragment"],
)
async def test_htu_is_compared_after_rfc3986_normalisation(issuer: Issuer, htu: str) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        response = await post(client, dpop_headers(token, me.proof(token, htu=htu)))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "htu",
    [
        "http://api.test/v1/chat/completions",
        "https://api.test:8443/v1/chat/completions",
        "https://user@api.test/v1/chat/completions",
        "https://api.test/v1/chat/completions/..",
        "https://api.test/v1/chat%2Fcompletions",
        "https://api.test:x/v1/chat/completions",
    ],
    ids=["scheme", "port", "userinfo", "dot-dot-up", "encoded-slash", "bad-port"],
)
async def test_other_urls_stay_other_urls(issuer: Issuer, htu: str) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        response = await post(client, dpop_headers(token, me.proof(token, htu=htu)))
    assert response.status_code == 401
    assert "htu" in challenges(response)["DPoP"]["error_description"]


async def test_an_encoded_slash_in_the_path_is_kept_apart(issuer: Issuer) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    url = "https://api.test/v1/models/org%2Fmodel"
    async with client_for(middleware(issuer, dpop=DPoP())) as client:
        same = await client.get(
            "/v1/models/org%2Fmodel",
            headers=dpop_headers(token, me.proof(token, htm="GET", htu=url)),
        )
        other = me.proof(token, htm="GET", htu="https://api.test/v1/models/org/model")
        slash = await client.get("/v1/models/org%2Fmodel", headers=dpop_headers(token, other))
    # authenticated; the app's "/v1/models/{model}" route takes no "/" in a model name
    assert same.status_code == 404
    assert "www-authenticate" not in same.headers
    assert slash.status_code == 401
    assert "htu" in challenges(slash)["DPoP"]["error_description"]


async def test_htu_under_a_mount_is_the_public_path(issuer: Issuer) -> None:
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    protected = middleware(issuer, dpop=DPoP())
    app = Starlette(routes=[Mount("/api", app=protected)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=RESOURCE) as c:
        proof = me.proof(token, htu="https://api.test/api/v1/chat/completions")
        response = await c.post("/api/v1/chat/completions", headers=dpop_headers(token, proof))
    await protected.aclose()
    assert response.status_code == 200


def test_normalisation_examples() -> None:
    assert normalize_url("https://[::1]:443/a") == "https://[::1]/a"
    assert normalize_url("http://EXAMPLE.com:8080") == "http://example.com:8080/"
    assert normalize_url("https://e.test/a%2fb%7E") == "https://e.test/a%2Fb~"
    assert normalize_url("https://e.test/a/b/../../..") == "https://e.test/"
    assert normalize_url("ftp://e.test/a") is None
    assert normalize_url("https:///a") is None


async def test_an_endpoint_scope_refusal_of_a_dpop_request_is_in_the_dpop_challenge(
    issuer: Issuer,
) -> None:
    from aimiddleware.oauth import OAuthMiddleware

    from .test_endpoint_scopes import fastapi_app

    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt}, scope="chat")
    mw = OAuthMiddleware(
        fastapi_app(handler=True), resource=RESOURCE, issuer=issuer.url, dpop=DPoP()
    )
    proof = me.proof(token, htu="https://api.test/v1/embeddings")
    async with client_for(mw) as client:
        response = await client.post("/v1/embeddings", headers=dpop_headers(token, proof), json={})
    assert response.status_code == 403
    # one field with both challenges, comma-joined (RFC 9110 section 11.6.1)
    (value,) = response.headers.get_list("www-authenticate")
    bearer_part, dpop_part = value.split(", DPoP ")
    assert bearer_part.startswith("Bearer ")
    assert "error=" not in bearer_part
    assert dpop_part.startswith('error="insufficient_scope"')
