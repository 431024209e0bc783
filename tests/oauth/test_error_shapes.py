"""Refusals are written by the library's one error renderer: the OpenAI envelope by default,
RFC 9457 problem details when asked for, the request id, and the same challenges either way."""

from __future__ import annotations

import httpx
import pytest

from aimiddleware.context import Receive, Scope, Send, get_error

from .apps import RESOURCE, bearer, client_for, middleware
from .issuer import Issuer, parse_challenges
from .test_endpoint_scopes import protected

pytestmark = pytest.mark.anyio

PROBLEM = {"accept": "application/problem+json"}


async def test_a_refusal_carries_the_request_id_and_is_recorded_in_the_scope(
    issuer: Issuer,
) -> None:
    seen = {}
    mw = middleware(issuer)

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        await mw(scope, receive, send)
        seen["error"] = get_error(scope)

    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url=RESOURCE) as client:
        response = await client.post(
            "/v1/chat/completions", json={}, headers={"x-request-id": "req-7"}
        )
    await mw.aclose()
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "req-7"
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "invalid_api_key"
    error = seen["error"]
    assert error is not None
    assert (error.status, error.code, error.message) == (
        401, "invalid_api_key", "authentication required",
    )  # fmt: skip


async def test_a_refusal_is_problem_details_when_accept_asks_for_them(issuer: Issuer) -> None:
    token = issuer.mint(scope="models:read")
    async with client_for(middleware(issuer)) as client:
        response = await client.post(
            "/v1/chat/completions", json={}, headers={**bearer(token), **PROBLEM}
        )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 403
    assert problem["title"] == "Forbidden"
    assert problem["error_type"] == "permission_error"
    assert problem["code"] == "insufficient_scope"
    assert problem["detail"] == "the access token lacks the required scope: chat"
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["error"] == "insufficient_scope"
    assert challenge["scope"] == "chat"


async def test_an_unavailable_answer_as_problem_details_keeps_retry_after(issuer: Issuer) -> None:
    issuer.jwks_down = True
    async with client_for(middleware(issuer)) as client:
        response = await client.post(
            "/v1/chat/completions", json={}, headers={**bearer(issuer.mint()), **PROBLEM}
        )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["code"] == "auth_unavailable"


async def test_the_fastapi_handler_and_decorator_render_problem_details(issuer: Issuer) -> None:
    token = issuer.mint(scope="chat")
    async with client_for(protected(issuer)) as client:
        dependency = await client.post(
            "/v1/embeddings", json={}, headers={**bearer(token), **PROBLEM}
        )
        decorator = await client.get("/v1/files", headers={**bearer(token), **PROBLEM})
        envelope = await client.get("/v1/files", headers=bearer(token))
    for response in (dependency, decorator):
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "insufficient_scope"
        assert "Bearer" in parse_challenges(response.headers.get_list("www-authenticate"))
    assert envelope.json()["error"]["code"] == "insufficient_scope"
