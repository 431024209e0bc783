"""MCPScopeMiddleware closes the two ways around its rules: a tool no rule maps, and a JSON-RPC
body sent with a method other than POST."""

from __future__ import annotations

from typing import Any

import pytest

from aimiddleware import ConfigurationError, Principal, mcp
from aimiddleware._asgi import get_annotations
from aimiddleware.mcp import INSUFFICIENT_SCOPE, MCPScopeMiddleware

from ._helpers import Exchange, http_scope, recording_app, rpc, run

pytestmark = pytest.mark.anyio

METADATA = "https://api.example.com/.well-known/oauth-protected-resource/mcp"
TOOLS = {"chat": ["chat"], "list_models": ["models:read"]}


def agent(*scopes: str) -> Principal:
    return Principal(id="agent-7", scopes=frozenset(scopes), tier="agent")


def guarded(exchange: Exchange, **options: Any) -> MCPScopeMiddleware:
    options.setdefault("tools", TOOLS)
    options.setdefault("resource_metadata", METADATA)
    return MCPScopeMiddleware(recording_app(exchange), **options)


async def test_a_tool_no_rule_maps_is_refused_even_with_every_scope() -> None:
    ex = Exchange()
    scope = http_scope(principal=agent("mcp", "chat", "models:read", "admin"))
    call = rpc("tools/call", {"name": "delete_everything", "arguments": {}}, id=5)
    ex.sent = await run(guarded(ex), scope, call)
    assert ex.status == 403
    assert not ex.app_called
    # no scope can get it, so no challenge invites a step-up
    assert ex.header(b"www-authenticate") is None
    assert ex.header(b"cache-control") == b"no-store"
    body = ex.json()
    assert body["id"] == 5
    assert body["error"]["code"] == mcp.FORBIDDEN_TOOL
    assert body["error"]["message"] == (
        "Forbidden: no scope rule allows the tool 'delete_everything' on this server"
    )
    assert body["error"]["data"] == {"error": "tool_not_allowed", "tool": "delete_everything"}
    assert get_annotations(scope)["aimiddleware.mcp.outcome"] == "tool_not_allowed"


async def test_a_tools_call_without_a_string_name_is_refused() -> None:
    for params in ({"arguments": {}}, {"name": ["chat"]}, {"name": None}):
        ex = Exchange()
        scope = http_scope(principal=agent("mcp", "chat", "models:read"))
        ex.sent = await run(guarded(ex), scope, rpc("tools/call", params))
        assert ex.status == 403, params
        assert ex.json()["error"]["code"] == mcp.FORBIDDEN_TOOL
        assert ex.json()["error"]["data"] == {"error": "tool_not_allowed"}


async def test_a_batch_with_one_unmapped_tool_is_refused_whole() -> None:
    ex = Exchange()
    batch = b"[" + rpc("tools/call", {"name": "chat"}, id=1) + b","
    batch += rpc("tools/call", {"name": "shell"}, id=2) + b"]"
    ex.sent = await run(guarded(ex), http_scope(principal=agent("mcp", "chat")), batch)
    assert ex.status == 403
    assert not ex.app_called
    assert ex.json()["id"] is None
    assert ex.json()["error"]["data"]["tool"] == "shell"


async def test_without_the_endpoint_scope_the_answer_is_the_step_up_challenge_first() -> None:
    """A caller without ``scopes`` learns nothing about which tools are mapped."""
    ex = Exchange()
    body = rpc("tools/call", {"name": "delete_everything"})
    ex.sent = await run(guarded(ex), http_scope(principal=agent("chat")), body)
    assert ex.status == 403
    assert ex.json()["error"]["code"] == INSUFFICIENT_SCOPE
    assert ex.json()["error"]["data"]["missing_scopes"] == ["mcp"]


@pytest.mark.parametrize(
    ("granted", "status"), [(("mcp",), 200), (("mcp", "admin"), 200)], ids=["mcp", "admin"]
)
async def test_allow_unmapped_tools_lets_them_through_with_the_endpoint_scopes(
    granted: tuple[str, ...], status: int
) -> None:
    ex = Exchange()
    body = rpc("tools/call", {"name": "delete_everything"})
    mw = guarded(ex, allow_unmapped_tools=True)
    ex.sent = await run(mw, http_scope(principal=agent(*granted)), body)
    assert ex.status == status
    assert ex.app_body == body


async def test_allow_unmapped_tools_with_default_tool_scopes_asks_for_those() -> None:
    mw_options = {"allow_unmapped_tools": True, "default_tool_scopes": ["admin"]}
    refused, allowed = Exchange(), Exchange()
    body = rpc("tools/call", {"name": "delete_everything"}, id=8)
    refused.sent = await run(
        guarded(refused, **mw_options), http_scope(principal=agent("mcp")), body
    )
    allowed.sent = await run(
        guarded(allowed, **mw_options), http_scope(principal=agent("mcp", "admin")), body
    )
    assert refused.status == 403
    assert refused.json()["error"]["code"] == INSUFFICIENT_SCOPE
    assert refused.json()["error"]["data"]["missing_scopes"] == ["admin"]
    assert b'scope="mcp admin"' in (refused.header(b"www-authenticate") or b"")
    assert allowed.status == 200


def test_default_tool_scopes_without_allow_unmapped_tools_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="allow_unmapped_tools"):
        MCPScopeMiddleware(recording_app(Exchange()), default_tool_scopes=["admin"])
    with pytest.raises(ConfigurationError, match="allow_unmapped_tools"):
        MCPScopeMiddleware(recording_app(Exchange()), allow_unmapped_tools="yes")


def test_repr_says_whether_unmapped_tools_are_allowed() -> None:
    assert "allow_unmapped_tools=False" in repr(MCPScopeMiddleware(recording_app(Exchange())))


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "GET", "OPTIONS", "QUERY"])
async def test_a_json_rpc_body_is_checked_whatever_the_http_method(method: str) -> None:
    """A server that reads the body on any method must not get a call the guard never saw."""
    ex = Exchange()
    call = rpc("tools/call", {"name": "chat", "arguments": {}}, id=3)
    scope = http_scope(method, principal=agent("mcp", "models:read"))
    ex.sent = await run(guarded(ex), scope, call)
    assert ex.status == 403
    assert not ex.app_called
    assert ex.json()["id"] == 3
    assert ex.json()["error"]["data"]["missing_scopes"] == ["chat"]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_a_body_that_is_not_json_is_refused_whatever_the_http_method(method: str) -> None:
    ex = Exchange()
    scope = http_scope(method, principal=agent("mcp", "chat"))
    ex.sent = await run(guarded(ex), scope, b"tools/call chat")
    assert ex.status == 400
    assert not ex.app_called
    assert ex.json()["error"]["code"] == -32700


async def test_a_body_over_max_body_is_413_whatever_the_http_method() -> None:
    ex = Exchange()
    body = rpc("tools/call", {"name": "chat", "arguments": {"text": "x" * 200}})
    scope = http_scope("PUT", principal=agent("mcp", "chat"))
    ex.sent = await run(guarded(ex, max_body=100), scope, body)
    assert ex.status == 413
    assert not ex.app_called


async def test_an_allowed_call_by_put_reaches_the_app_with_its_body() -> None:
    ex = Exchange()
    call = rpc("tools/call", {"name": "chat", "arguments": {}})
    ex.sent = await run(guarded(ex), http_scope("PUT", principal=agent("mcp", "chat")), call)
    assert ex.status == 200
    assert ex.app_body == call


async def test_get_and_delete_without_a_body_still_need_only_the_endpoint_scopes() -> None:
    for method in ("GET", "DELETE"):
        ex = Exchange()
        ex.sent = await run(guarded(ex), http_scope(method, principal=agent("mcp")))
        assert ex.status == 200, method
        assert ex.app_body == b""
