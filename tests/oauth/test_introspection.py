"""Opaque tokens through RFC 7662 introspection against the real issuer."""

from __future__ import annotations

import threading
import time

import pytest

from aimiddleware.oauth import Introspection

from .apps import bearer, client_for, middleware
from .issuer import INTROSPECTION_CLIENT, Issuer

pytestmark = pytest.mark.anyio


def introspection(**options: object) -> Introspection:
    client_id, secret = INTROSPECTION_CLIENT
    return Introspection(client_id=client_id, client_secret=secret, **options)  # type: ignore[arg-type]


def active(issuer: Issuer, token: str, **claims: object) -> None:
    now = int(time.time())
    answer = {
        "active": True,
        "iss": issuer.url,
        "aud": "https://api.test",
        "client_id": "agent-9",
        "sub": "user-9",
        "scope": "chat",
        "exp": now + 600,
        "iat": now,
        "tier": "pro",
    }
    answer.update(claims)
    issuer.opaque[token] = {k: v for k, v in answer.items() if v is not None}


async def test_active_opaque_token_is_accepted_and_cached(issuer: Issuer) -> None:
    active(issuer, "opaque-1")
    async with client_for(middleware(issuer, introspection=introspection())) as client:
        for _ in range(3):
            response = await client.post(
                "/v1/chat/completions", headers=bearer("opaque-1"), json={}
            )
            assert response.status_code == 200
    principal = response.json()["principal"]
    assert principal["credential"] == "introspection"
    # the issuer's user, as with a JWT: not the client, which every user of it shares
    assert (principal["id"], principal["tier"]) == (f"sub:user-9@{issuer.url}", "pro")
    assert issuer.introspections == 1
    # client_secret_basic, RFC 6749 section 2.3.1 encoding of the odd characters
    assert issuer.seen_introspection_auth[0].startswith("Basic ")


async def test_client_secret_post_works(issuer: Issuer) -> None:
    active(issuer, "opaque-2")
    mw = middleware(issuer, introspection=introspection(auth_method="client_secret_post"))
    async with client_for(mw) as client:
        response = await client.post("/v1/chat/completions", headers=bearer("opaque-2"), json={})
    assert response.status_code == 200
    assert issuer.seen_introspection_auth == [""]


async def test_inactive_token_is_401_and_not_asked_about_again_at_once(issuer: Issuer) -> None:
    async with client_for(middleware(issuer, introspection=introspection())) as client:
        for _ in range(3):
            response = await client.post("/v1/chat/completions", headers=bearer("unknown"), json={})
            assert response.status_code == 401
            assert "not active" in response.json()["error"]["message"]
    assert issuer.introspections == 1


async def test_introspected_wrong_audience_is_401(issuer: Issuer) -> None:
    active(issuer, "opaque-3", aud="https://elsewhere.test")
    async with client_for(middleware(issuer, introspection=introspection())) as client:
        response = await client.post("/v1/chat/completions", headers=bearer("opaque-3"), json={})
    assert response.status_code == 401
    assert "audience" in response.json()["error"]["message"]


async def test_cache_never_outlives_exp(issuer: Issuer) -> None:
    import asyncio

    active(issuer, "opaque-4", exp=int(time.time()) + 2)
    mw = middleware(issuer, introspection=introspection(cache_ttl=600), leeway=0)
    async with client_for(mw) as client:
        first = await client.post("/v1/chat/completions", headers=bearer("opaque-4"), json={})
        await asyncio.sleep(2.2)
        del issuer.opaque["opaque-4"]  # the authorization server forgot it too
        second = await client.post("/v1/chat/completions", headers=bearer("opaque-4"), json={})
    assert first.status_code == 200
    assert second.status_code == 401
    assert issuer.introspections == 2


async def test_introspection_down_is_503_with_one_log_line(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.introspection_down = True
    async with client_for(middleware(issuer, introspection=introspection())) as client:
        response = await client.post("/v1/chat/completions", headers=bearer("opaque-5"), json={})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "auth_unavailable"
    lines = [r.getMessage() for r in caplog.records if r.name == "aimiddleware.oauth"]
    assert len(lines) == 1
    assert "introspection failed" in lines[0]
    assert "opaque-5" not in caplog.text
    assert INTROSPECTION_CLIENT[1] not in caplog.text


async def test_wrong_client_secret_is_503_not_401(issuer: Issuer) -> None:
    # the endpoint refuses the resource server itself: an operator problem, not the caller's
    active(issuer, "opaque-6")
    bad = Introspection(client_id=INTROSPECTION_CLIENT[0], client_secret="wrong")
    async with client_for(middleware(issuer, introspection=bad)) as client:
        response = await client.post("/v1/chat/completions", headers=bearer("opaque-6"), json={})
    assert response.status_code == 503


def test_repr_hides_the_secret() -> None:
    assert INTROSPECTION_CLIENT[1] not in repr(introspection())


async def test_an_active_answer_without_aud_is_401(issuer: Issuer) -> None:
    # the authorization server may serve other resources: no audience, no proof it is ours
    active(issuer, "opaque-7", aud=None)
    async with client_for(middleware(issuer, introspection=introspection())) as client:
        response = await client.post("/v1/chat/completions", headers=bearer("opaque-7"), json={})
    assert response.status_code == 401
    assert "audience" in response.json()["error"]["message"]


async def test_made_up_tokens_at_once_make_at_most_max_concurrent_calls(issuer: Issuer) -> None:
    import asyncio

    issuer.introspection_delay = 0.3
    mw = middleware(issuer, introspection=introspection(max_concurrent=3, max_wait=60))
    async with client_for(mw) as client:
        responses = await asyncio.gather(
            *(
                client.post("/v1/chat/completions", headers=bearer(f"made-up-{i}"), json={})
                for i in range(12)
            )
        )
        assert [r.status_code for r in responses] == [401] * 12
        assert issuer.introspections == 12
        assert issuer.most_introspections_in_flight <= 3
        # inactive answers are remembered: the same tokens again cost no call
        for i in range(12):
            again = await client.post("/v1/chat/completions", headers=bearer(f"made-up-{i}"))
            assert again.status_code == 401
    assert issuer.introspections == 12


async def test_callers_beyond_the_bound_get_503_after_max_wait(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    issuer.introspection_gate = threading.Event()  # the first call is answered when told
    active(issuer, "opaque-8")
    mw = middleware(issuer, introspection=introspection(max_concurrent=1, max_wait=0.1))
    async with client_for(mw) as client:
        first = asyncio.ensure_future(
            client.post("/v1/chat/completions", headers=bearer("opaque-8"), json={})
        )
        assert await asyncio.to_thread(issuer.introspection_started.wait, 30)
        refused = [
            await client.post("/v1/chat/completions", headers=bearer(f"made-up-{i}"), json={})
            for i in range(3)
        ]
        issuer.introspection_gate.set()
        assert (await first).status_code == 200
    for response in refused:
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"]["code"] == "auth_unavailable"
    assert issuer.introspections == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "aimiddleware.oauth"]
    assert len(lines) == 1
    assert "in flight" in lines[0]


def test_the_bound_is_validated() -> None:
    from aimiddleware import ConfigurationError

    for bad in ({"max_concurrent": 0}, {"max_wait": -1}, {"max_concurrent": True}):
        with pytest.raises(ConfigurationError):
            introspection(**bad)


async def test_remembered_inactive_tokens_are_bounded_by_cache_size(issuer: Issuer) -> None:
    mw = middleware(issuer, introspection=introspection(), cache_size=2)
    async with client_for(mw) as client:
        for token in ("gone-0", "gone-1", "gone-2", "gone-2", "gone-0"):
            response = await client.post("/v1/chat/completions", headers=bearer(token), json={})
            assert response.status_code == 401
    # gone-2 was still remembered; gone-0 had made room for the newer ones and was asked again
    assert issuer.introspections == 4
