"""Every request-body read has a bound, whether the body was read here or by an outer middleware.

The attacks: a body an outer middleware already read (with a larger bound) slipped past
``MCPScopeMiddleware(max_body=...)``, and idempotency and rate limiting read bodies whole,
without any bound.
"""

from __future__ import annotations

import json

import pytest

from aimiddleware import IdempotencyMiddleware, Principal
from aimiddleware.context import Message, Receive, RequestBodyTooLarge, Scope, Send, read_body
from aimiddleware.mcp import MCPScopeMiddleware
from aimiddleware.ratelimit import RateLimitMiddleware, Tier

from .asgi import Exchange, recording_app, run
from .mcp._helpers import http_scope, rpc

pytestmark = pytest.mark.anyio

AGENT = Principal(id="agent-7", scopes=frozenset({"mcp", "chat"}), tier="agent")


def reading_first(app: object, limit: int | None = None) -> object:
    """An outer middleware that reads (and so caches) the body before the inner one runs."""

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        _, receive = await read_body(scope, receive, limit=limit)
        await app(scope, receive, send)  # type: ignore[operator]

    return outer


async def test_read_body_enforces_its_limit_on_a_cached_body() -> None:
    scope: Scope = {"type": "http"}
    messages = [{"type": "http.request", "body": b"x" * 500, "more_body": False}]

    async def receive() -> Message:
        return messages.pop(0)

    _, replay = await read_body(scope, receive)  # an outer reader without a bound
    with pytest.raises(RequestBodyTooLarge):
        await read_body(scope, replay, limit=100)
    body, _ = await read_body(scope, replay, limit=500)  # within the bound: served from the cache
    assert body == b"x" * 500


async def test_mcp_max_body_holds_behind_an_outer_reader() -> None:
    ex = Exchange()
    inner = MCPScopeMiddleware(recording_app(ex), tools={"chat": ["chat"]}, max_body=100)
    body = rpc("tools/call", {"name": "chat", "arguments": {"text": "x" * 500}})
    ex.sent = await run(reading_first(inner), http_scope(principal=AGENT), body)  # type: ignore[arg-type]
    assert ex.status == 413
    assert not ex.app_called


def _chat_body(size: int) -> bytes:
    return json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "x" * size}]}
    ).encode()


async def test_idempotency_refuses_a_body_over_its_bound_with_413() -> None:
    ex = Exchange()
    app = IdempotencyMiddleware(recording_app(ex), anonymous="shared", max_request_bytes=1024)
    scope = http_scope(path="/v1/chat/completions", headers=[(b"idempotency-key", b"k1")])
    ex.sent = await run(app, scope, [_chat_body(600), _chat_body(600)])
    assert ex.status == 413
    assert not ex.app_called
    assert ex.header(b"content-type") == b"application/problem+json"
    problem = ex.json()
    assert problem["status"] == 413
    assert problem["type"].endswith("#request-body-too-large")
    assert "1024" in problem["detail"]


async def test_idempotency_bound_holds_behind_an_outer_reader() -> None:
    ex = Exchange()
    inner = IdempotencyMiddleware(recording_app(ex), anonymous="shared", max_request_bytes=1024)
    scope = http_scope(path="/v1/chat/completions", headers=[(b"idempotency-key", b"k1")])
    ex.sent = await run(reading_first(inner), scope, _chat_body(4096))  # type: ignore[arg-type]
    assert ex.status == 413
    assert not ex.app_called


async def test_idempotency_default_bound_is_8_mib() -> None:
    ex = Exchange()
    app = IdempotencyMiddleware(recording_app(ex), anonymous="shared")
    scope = http_scope(path="/v1/chat/completions", headers=[(b"idempotency-key", b"k1")])
    chunk = b"x" * (1024 * 1024)
    ex.sent = await run(app, scope, [chunk] * 9)
    assert ex.status == 413
    assert not ex.app_called


async def test_rate_limit_refuses_a_body_over_its_bound_with_413() -> None:
    ex = Exchange()
    app = RateLimitMiddleware(
        recording_app(ex), tiers=[Tier("a", tokens="100000/minute")], max_request_bytes=1024
    )
    scope = http_scope(path="/v1/chat/completions")
    ex.sent = await run(app, scope, [_chat_body(600), _chat_body(600)])
    assert ex.status == 413
    assert not ex.app_called
    assert ex.json()["error"]["code"] == "request_too_large"
    assert ex.json()["error"]["type"] == "invalid_request_error"


async def test_rate_limit_default_bound_is_8_mib() -> None:
    ex = Exchange()
    app = RateLimitMiddleware(recording_app(ex), tiers=[Tier("a", tokens="100000/minute")])
    chunk = b"x" * (1024 * 1024)
    ex.sent = await run(app, http_scope(path="/v1/chat/completions"), [chunk] * 9)
    assert ex.status == 413
    assert not ex.app_called


async def test_a_body_within_the_bounds_still_reaches_the_app() -> None:
    ex = Exchange()
    app = RateLimitMiddleware(
        IdempotencyMiddleware(recording_app(ex), anonymous="shared", max_request_bytes=4096),
        tiers=[Tier("a", tokens="100000/minute")],
        max_request_bytes=4096,
    )
    scope = http_scope(path="/v1/chat/completions", headers=[(b"idempotency-key", b"k2")])
    body = _chat_body(1000)
    ex.sent = await run(app, scope, body)
    assert ex.status == 200
    assert ex.app_body == body
