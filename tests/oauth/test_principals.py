"""One principal per user: issuer + subject, API keys apart, as idempotency and limits see it.

Real tokens from real issuers' keys, through the real middlewares: OAuth outside idempotency
outside rate limiting, the order every deployment uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aimiddleware import ConfigurationError, get_principal
from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.oauth import APIKeys, OAuthMiddleware
from aimiddleware.ratelimit import RateLimitMiddleware, Tier
from aimiddleware.stores import MemoryStore

from .apps import RESOURCE, bearer, echo_app
from .issuer import Issuer

pytestmark = pytest.mark.anyio

PATH = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def answering_app(runs: list[str]) -> Starlette:
    """An endpoint whose every run says whose it was and which run it is."""

    async def chat(request: Request) -> Response:
        principal = get_principal(request.scope)
        assert principal is not None
        runs.append(principal.id)
        return JSONResponse({"run": len(runs), "for": principal.id})

    return Starlette(routes=[Route(PATH, chat, methods=["POST"])])


def stack(issuer: Issuer, app: Any, **oauth: Any) -> OAuthMiddleware:
    """OAuth trusting ``issuer`` (its key set given, nothing fetched) around ``app``."""
    return OAuthMiddleware(app, resource=RESOURCE, issuer=issuer.url, jwks=issuer.jwks(), **oauth)


@contextlib.asynccontextmanager
async def client_of(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=RESOURCE
    ) as client:
        yield client


def keyed(token: str, key: str) -> dict[str, str]:
    return {**bearer(token), "idempotency-key": key}


async def test_users_of_one_client_never_share_idempotency_records(issuer: Issuer) -> None:
    runs: list[str] = []
    app = stack(issuer, IdempotencyMiddleware(answering_app(runs), store=MemoryStore()))
    alice = issuer.mint(sub="alice", client_id="webapp")
    bob = issuer.mint(sub="bob", client_id="webapp")
    async with client_of(app) as client:
        first = await client.post(PATH, headers=keyed(alice, "order-1"), json=BODY)
        # Bob, through the same OAuth client, with Alice's key and body: his own run
        same = await client.post(PATH, headers=keyed(bob, "order-1"), json=BODY)
        await client.post(PATH, headers=keyed(alice, "order-2"), json=BODY)
        # and with another body under her key, no 422 tells him the key exists
        other = await client.post(PATH, headers=keyed(bob, "order-2"), json={**BODY, "n": 2})
    alice_id, bob_id = f"sub:alice@{issuer.url}", f"sub:bob@{issuer.url}"
    assert first.json() == {"run": 1, "for": alice_id}
    assert same.status_code == 200
    assert "idempotent-replayed" not in same.headers
    assert same.json() == {"run": 2, "for": bob_id}
    assert other.status_code == 200
    assert other.json() == {"run": 4, "for": bob_id}
    assert runs == [alice_id, bob_id, alice_id, bob_id]


async def test_another_body_under_a_users_own_key_is_still_422(issuer: Issuer) -> None:
    # the scope is per user, not looser: the same user reusing a key is still caught
    runs: list[str] = []
    app = stack(issuer, IdempotencyMiddleware(answering_app(runs), store=MemoryStore()))
    alice = issuer.mint(sub="alice", client_id="webapp")
    async with client_of(app) as client:
        await client.post(PATH, headers=keyed(alice, "order-1"), json=BODY)
        replay = await client.post(PATH, headers=keyed(alice, "order-1"), json=BODY)
        reused = await client.post(PATH, headers=keyed(alice, "order-1"), json={**BODY, "n": 2})
    assert replay.headers["idempotent-replayed"] == "true"
    assert reused.status_code == 422
    assert len(runs) == 1


async def test_an_api_key_is_not_the_oauth_client_of_the_same_name(issuer: Issuer) -> None:
    runs: list[str] = []
    key, record = APIKeys.generate("webapp", scopes=["chat"])
    app = stack(
        issuer,
        IdempotencyMiddleware(answering_app(runs), store=MemoryStore()),
        api_keys=APIKeys([record]),
    )
    # a client-credentials token without sub is its client, in the client namespace
    client_token = issuer.mint(sub=None, client_id="webapp")
    async with client_of(app) as client:
        by_key = await client.post(PATH, headers=keyed(key, "job-1"), json=BODY)
        by_client = await client.post(PATH, headers=keyed(client_token, "job-1"), json=BODY)
    assert by_key.json()["for"] == "key:webapp"
    assert by_client.json()["for"] == f"client:webapp@{issuer.url}"
    assert "idempotent-replayed" not in by_client.headers
    assert len(runs) == 2


async def test_the_same_sub_at_two_issuers_is_two_principals() -> None:
    # two gateways, each trusting its own issuer, sharing one idempotency store
    first, second = Issuer(), Issuer()
    runs: list[str] = []
    store = MemoryStore()
    apps = [
        stack(source, IdempotencyMiddleware(answering_app(runs), store=store))
        for source in (first, second)
    ]
    answers = []
    try:
        for app, source in zip(apps, (first, second), strict=True):
            async with client_of(app) as client:
                token = source.mint(sub="user-1", client_id="cli")
                answers.append(await client.post(PATH, headers=keyed(token, "k-1"), json=BODY))
    finally:
        first.close()
        second.close()
    assert [a.status_code for a in answers] == [200, 200]
    assert "idempotent-replayed" not in answers[1].headers
    assert runs == [f"sub:user-1@{first.url}", f"sub:user-1@{second.url}"]


def limited(issuer: Issuer, **options: Any) -> OAuthMiddleware:
    app = RateLimitMiddleware(
        Starlette(routes=[Route(PATH, lambda r: JSONResponse({}), methods=["POST"])]),
        tiers=[Tier("t", requests="1/minute")],
        **options,
    )
    return stack(issuer, app)


async def test_rate_limits_count_each_user_of_a_client_apart(issuer: Issuer) -> None:
    alice = issuer.mint(sub="alice", client_id="webapp")
    bob = issuer.mint(sub="bob", client_id="webapp")
    async with client_of(limited(issuer)) as client:
        codes = [
            (await client.post(PATH, headers=bearer(token), json=BODY)).status_code
            for token in (alice, bob, alice)
        ]
    assert codes == [200, 200, 429]


async def test_rate_limits_per_client_share_one_bucket(issuer: Issuer) -> None:
    alice = issuer.mint(sub="alice", client_id="webapp")
    bob = issuer.mint(sub="bob", client_id="webapp")
    carol = issuer.mint(sub="carol", client_id="other-app")
    async with client_of(limited(issuer, key_by="client")) as client:
        codes = [
            (await client.post(PATH, headers=bearer(token), json=BODY)).status_code
            for token in (alice, bob, carol)
        ]
    assert codes == [200, 429, 200]


async def test_principal_claims_cannot_name_the_client(issuer: Issuer) -> None:
    # the old default ("client_id", "sub") made every user of a client one principal
    with pytest.raises(ConfigurationError, match="key_by='client'"):
        OAuthMiddleware(
            echo_app(), resource=RESOURCE, issuer=issuer.url, principal_claims=["client_id", "sub"]
        )
