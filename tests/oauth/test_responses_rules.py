"""The Responses API under the rule docs/oauth.md gives (and the reference app uses): creating,
reading, cancelling and deleting a response all need the ``chat`` scope."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from aimiddleware.oauth import APIKeys, OAuthMiddleware, ScopeRule

from .apps import RESOURCE, RULES, bearer, client_for, whoami

pytestmark = pytest.mark.anyio

CALLS = [
    ("POST", "/v1/responses"),
    ("GET", "/v1/responses/resp_1"),
    ("DELETE", "/v1/responses/resp_1"),
    ("POST", "/v1/responses/resp_1/cancel"),
    ("GET", "/v1/responses/resp_1/input_items"),
]


def responses_api() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/responses", whoami, methods=["POST"]),
            Route("/v1/responses/{id}", whoami, methods=["GET", "DELETE"]),
            Route("/v1/responses/{id}/cancel", whoami, methods=["POST"]),
            Route("/v1/responses/{id}/input_items", whoami, methods=["GET"]),
        ]
    )


async def test_every_responses_call_needs_the_chat_scope() -> None:
    chat_key, chat = APIKeys.generate("agent-7", scopes=["chat"])
    reader_key, reader = APIKeys.generate("reader", scopes=["models:read", "embeddings"])
    rules = [*RULES, ScopeRule("/v1/responses*", ["chat"])]
    mw = OAuthMiddleware(
        responses_api(), resource=RESOURCE, api_keys=APIKeys([chat, reader]), rules=rules
    )
    async with client_for(mw) as client:
        for method, path in CALLS:
            allowed = await client.request(method, path, headers=bearer(chat_key))
            refused = await client.request(method, path, headers=bearer(reader_key))
            anonymous = await client.request(method, path)
            assert allowed.status_code == 200, (method, path)
            assert allowed.json()["principal"]["id"] == "key:agent-7"
            assert refused.status_code == 403, (method, path)
            assert refused.json()["error"]["code"] == "insufficient_scope"
            assert 'scope="chat"' in refused.headers["www-authenticate"]
            assert anonymous.status_code == 401, (method, path)
