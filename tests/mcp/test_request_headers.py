"""MCPScopeMiddleware and the request metadata headers of protocol revision 2026-07-28:
``Mcp-Method`` and ``Mcp-Name`` must agree with the JSON-RPC body before any scope is decided,
so that nothing that routes or meters on the headers sees another call than the one checked."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from aimiddleware import Principal
from aimiddleware._asgi import get_annotations
from aimiddleware.mcp import MCPScopeMiddleware

from ._helpers import Exchange, http_scope, recording_app, rpc, run

pytestmark = pytest.mark.anyio

TOOLS = {"chat": ["chat"], "list_models": ["models:read"], "prompts": []}
MISMATCH = -32020
VERSION = "2026-07-28"
META = "io.modelcontextprotocol/protocolVersion"


def agent(*scopes: str) -> Principal:
    return Principal(id="agent-7", scopes=frozenset(scopes), tier="agent")


def modern(method: str, params: dict[str, Any] | None = None, id: int = 1) -> bytes:
    """A request as a 2026-07-28 client writes it: the protocol version in ``_meta``."""
    params = dict(params or {})
    params["_meta"] = {META: VERSION, "io.modelcontextprotocol/clientCapabilities": {}}
    return rpc(method, params, id=id)


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    names = {"version": b"mcp-protocol-version", "method": b"mcp-method", "name": b"mcp-name"}
    return [(names[k], v.encode()) for k, v in values.items()]


async def exchange(
    body: bytes, raw_headers: list[tuple[bytes, bytes]], *granted: str, method: str = "POST"
) -> Exchange:
    ex = Exchange()
    scope = http_scope(method, headers=raw_headers, principal=agent(*(granted or ("mcp",))))
    ex.sent = await run(MCPScopeMiddleware(recording_app(ex), tools=TOOLS), scope, body)
    ex.app_scope = ex.app_scope or scope
    return ex


def assert_mismatch(ex: Exchange, request_id: Any = 1) -> str:
    assert ex.status == 400
    assert not ex.app_called
    assert ex.header(b"www-authenticate") is None
    assert ex.header(b"cache-control") == b"no-store"
    body = ex.json()
    assert body["id"] == request_id
    assert body["error"]["code"] == MISMATCH
    assert body["error"]["message"].startswith("Header mismatch: ")
    assert get_annotations(ex.app_scope or {})["aimiddleware.mcp.outcome"] == "header_mismatch"
    return str(body["error"]["message"])


async def test_a_tool_named_otherwise_in_the_header_is_refused_before_its_scopes() -> None:
    """The smuggling attempt: headers say the allowed tool, the body calls another one."""
    body = modern("tools/call", {"name": "chat", "arguments": {}}, id=7)
    raw = headers(version=VERSION, method="tools/call", name="list_models")
    ex = await exchange(body, raw, "mcp", "models:read")
    message = assert_mismatch(ex, 7)
    assert message == (
        "Header mismatch: Mcp-Name header value 'list_models' does not match body value 'chat'"
    )


async def test_a_method_named_otherwise_in_the_header_is_refused() -> None:
    body = modern("tools/call", {"name": "chat"})
    raw = headers(version=VERSION, method="tools/list")
    message = assert_mismatch(await exchange(body, raw, "mcp", "chat"))
    assert "Mcp-Method header value 'tools/list' does not match body value 'tools/call'" in message


async def test_the_mismatch_wins_over_a_missing_scope() -> None:
    """The refusal names the disagreement, not a scope the client might step up for."""
    body = modern("tools/call", {"name": "chat"})
    raw = headers(version=VERSION, method="tools/call", name="list_models")
    assert_mismatch(await exchange(body, raw, "mcp"))


@pytest.mark.parametrize(
    ("method", "params", "name"),
    [
        ("tools/call", {"name": "chat", "arguments": {}}, "chat"),
        ("prompts/get", {"name": "summary"}, "summary"),
        ("resources/read", {"uri": "file:///projects/app/config.json"}, None),
        ("tools/list", {}, None),
        ("server/discover", {}, None),
    ],
)
async def test_headers_that_agree_with_the_body_pass(
    method: str, params: dict[str, Any], name: str | None
) -> None:
    body = modern(method, params)
    values = {"version": VERSION, "method": method}
    if method in ("tools/call", "prompts/get"):
        values["name"] = params["name"]
    if method == "resources/read":
        values["name"] = params["uri"]
    ex = await exchange(body, headers(**values), "mcp", "chat")
    assert ex.status == 200
    assert ex.app_body == body


async def test_a_base64_encoded_name_is_decoded_before_it_is_compared() -> None:
    name = "météo du jour"
    encoded = "=?base64?" + base64.b64encode(name.encode()).decode() + "?="
    tools = {name: ["weather"]}
    body = modern("tools/call", {"name": name})
    raw = headers(version=VERSION, method="tools/call", name=encoded)
    ok = Exchange()
    scope = http_scope(headers=raw, principal=agent("mcp", "weather"))
    ok.sent = await run(MCPScopeMiddleware(recording_app(ok), tools=tools), scope, body)
    assert ok.status == 200
    other = "=?base64?" + base64.b64encode(b"chat").decode() + "?="
    raw = headers(version=VERSION, method="tools/call", name=other)
    message = assert_mismatch(await exchange(body, raw, "mcp", "chat", "weather"))
    assert "value 'chat' does not match body value 'météo du jour'" in message


@pytest.mark.parametrize(
    "value",
    ["=?base64?not base64!?=", "=?base64?Y2hhdA?=", "=?base64?Y2hhdB==?=", "=?base64?/w==?="],
    ids=["not-base64", "unpadded", "non-canonical", "not-utf8"],
)
async def test_a_malformed_base64_name_is_refused(value: str) -> None:
    body = modern("tools/call", {"name": "chat"})
    raw = headers(version=VERSION, method="tools/call", name=value)
    assert "Mcp-Name" in assert_mismatch(await exchange(body, raw, "mcp", "chat"))


async def test_a_header_value_with_bytes_outside_visible_ascii_is_refused() -> None:
    body = modern("tools/call", {"name": "chat"})
    raw = [
        (b"mcp-protocol-version", VERSION.encode()),
        (b"mcp-method", b"tools/call"),
        (b"mcp-name", "chät".encode()),
    ]
    assert_mismatch(await exchange(body, raw, "mcp", "chat"))


@pytest.mark.parametrize("name", [b"mcp-method", b"mcp-name", b"mcp-protocol-version"])
async def test_a_routing_header_sent_twice_is_refused(name: bytes) -> None:
    body = modern("tools/call", {"name": "chat"})
    raw = headers(version=VERSION, method="tools/call", name="chat")
    raw.append((name, dict(raw)[name]))
    assert "more than once" in assert_mismatch(await exchange(body, raw, "mcp", "chat"))


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({"version": VERSION, "name": "chat"}, "Mcp-Method"),
        ({"version": VERSION, "method": "tools/call"}, "Mcp-Name"),
        ({"method": "tools/call", "name": "chat"}, "MCP-Protocol-Version"),
    ],
)
async def test_under_2026_07_28_a_missing_header_is_refused(
    values: dict[str, str], missing: str
) -> None:
    body = modern("tools/call", {"name": "chat"})
    message = assert_mismatch(await exchange(body, headers(**values), "mcp", "chat"))
    assert f"the {missing} header is missing" in message


async def test_the_protocol_version_header_must_match_the_body() -> None:
    body = modern("tools/list")
    raw = headers(version="2025-11-25", method="tools/list")
    message = assert_mismatch(await exchange(body, raw, "mcp"))
    assert "MCP-Protocol-Version header value '2025-11-25' does not match body value" in message


async def test_a_2026_07_28_version_header_asks_for_the_method_header_too() -> None:
    """A client claiming the revision in its header is held to it, whatever its body says."""
    raw = headers(version=VERSION)
    message = assert_mismatch(await exchange(rpc("tools/list"), raw, "mcp"))
    assert "the Mcp-Method header is missing" in message


async def test_an_extension_methods_name_header_is_left_to_the_server() -> None:
    """Extensions (tasks/get...) mirror a parameter of their own into Mcp-Name: the guard cannot
    know which, and no scope of its depends on it."""
    body = modern("tasks/get", {"taskId": "task-1"})
    raw = headers(version=VERSION, method="tasks/get", name="task-1")
    ex = await exchange(body, raw, "mcp")
    assert ex.status == 200
    assert ex.app_body == body


async def test_headers_describe_one_message_so_a_batch_with_them_is_refused() -> None:
    batch = json.dumps([json.loads(rpc("tools/call", {"name": "chat"}, id=1))]).encode()
    raw = headers(method="tools/call", name="chat")
    assert_mismatch(await exchange(batch, raw, "mcp", "chat"), None)


async def test_method_headers_on_a_request_without_a_body_are_refused() -> None:
    raw = headers(method="tools/call", name="chat")
    ex = await exchange(b"", raw, "mcp", "chat", method="GET")
    assert_mismatch(ex, None)


async def test_older_clients_without_the_headers_keep_working() -> None:
    for version in ([], headers(version="2025-11-25"), headers(version="2025-03-26")):
        ex = await exchange(rpc("tools/call", {"name": "chat"}), version, "mcp", "chat")
        assert ex.status == 200
        ex = await exchange(rpc("tools/call", {"name": "chat"}), version, "mcp")
        assert ex.status == 403  # and their calls are still checked on the body


async def test_an_older_client_that_sends_the_headers_is_held_to_them() -> None:
    body = rpc("tools/call", {"name": "chat"})
    raw = headers(version="2025-11-25", method="tools/call", name="list_models")
    assert_mismatch(await exchange(body, raw, "mcp", "models:read"))
    ex = await exchange(body, headers(method="tools/call", name="chat"), "mcp", "chat")
    assert ex.status == 200


async def test_an_overlong_header_value_is_cut_in_the_message() -> None:
    body = modern("tools/call", {"name": "chat"})
    raw = headers(version=VERSION, method="tools/call", name="x" * 5000)
    message = assert_mismatch(await exchange(body, raw, "mcp", "chat"))
    assert len(message) < 400


async def test_a_name_header_without_a_method_header_is_refused() -> None:
    """No client of any revision sends Mcp-Name alone: it can only be meant for whatever reads
    headers without the body."""
    body = rpc("tools/call", {"name": "chat"})
    message = assert_mismatch(await exchange(body, headers(name="list_models"), "mcp", "chat"))
    assert "Mcp-Name header without Mcp-Method" in message
