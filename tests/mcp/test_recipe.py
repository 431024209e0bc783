"""The docs/mcp.md recipe, run as written: a generic MCP server (official SDK) behind the
guards and the OAuth middleware, under uvicorn on loopback, with a real authorization server
(tests/oauth/issuer.py) in place of auth.example.com, driven by the official ``mcp`` client."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from aimiddleware.mcp import FORBIDDEN_ORIGIN, FORBIDDEN_TOOL, INSUFFICIENT_SCOPE

from ..oauth.issuer import Issuer, serving
from ..servers import ThreadedServer
from ._helpers import rpc

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

DOC = Path(__file__).parents[2] / "docs" / "mcp.md"
RESOURCE = "https://notes.example.com/mcp"
METADATA = "https://notes.example.com/.well-known/oauth-protected-resource/mcp"
ISSUER = Issuer()
# the recipe's MCP server, to add a tool to it as its maintainers would later
SERVERS: list[Any] = []


def recipe_app(issuer_url: str) -> Any:
    """The first Python block of docs/mcp.md, executed with ``issuer_url`` for the example
    authorization server; its ``app``."""
    block = re.search(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert block is not None
    code = block.group(1)
    assert "https://auth.example.com" in code
    namespace: dict[str, Any] = {}
    exec(compile(code.replace("https://auth.example.com", issuer_url), str(DOC), "exec"), namespace)
    SERVERS.append(namespace["server"])
    return namespace["app"]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serving(ISSUER), ThreadedServer(recipe_app(ISSUER.url)) as server:
        yield f"{server.url}/mcp"


def token(scopes: str) -> str:
    return ISSUER.mint(aud=RESOURCE, scope=scopes)


@asynccontextmanager
async def connect(url: str, scopes: str | None, **headers: str) -> AsyncIterator[Client]:
    if scopes is not None:
        headers["Authorization"] = f"Bearer {token(scopes)}"
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def test_a_caller_with_the_scopes_lists_and_calls_the_tools(url: str) -> None:
    async with connect(url, "mcp notes:write notes:read") as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools == {"add_note", "read_notes"}
        added = await client.call_tool("add_note", {"text": "buy milk"})
        assert not added.is_error
        read = await client.call_tool("read_notes", {})
        assert "buy milk" in read.structured_content["result"]  # type: ignore[index]


async def test_a_tool_without_its_scope_raises_the_scope_error_naming_the_scope(url: str) -> None:
    async with connect(url, "mcp notes:write") as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("read_notes", {})
    error = refused.value.error
    assert error.code == INSUFFICIENT_SCOPE
    assert error.data == {
        "error": "insufficient_scope",
        "scope": "mcp notes:read",
        "missing_scopes": ["notes:read"],
        "tool": "read_notes",
    }


async def test_without_a_token_the_endpoint_answers_401_with_resource_metadata(
    url: str,
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            url,
            content=rpc("tools/list"),
            headers={
                "content-type": "application/json",
                "accept": "application/json, text/event-stream",
            },
        )
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{METADATA}"' in challenge
    assert 'scope="mcp"' in challenge
    async with httpx.AsyncClient() as http:
        document = (
            await http.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))
        ).json()
    assert document["resource"] == RESOURCE
    assert document["authorization_servers"] == [ISSUER.url]


async def test_an_invalid_origin_is_403_even_with_every_scope(url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            url,
            content=rpc("tools/list"),
            headers={
                "origin": "https://evil.example.com",
                "authorization": f"Bearer {token('mcp notes:read notes:write')}",
                "content-type": "application/json",
                "accept": "application/json, text/event-stream",
            },
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == FORBIDDEN_ORIGIN
    # and the official client, sent from that origin, does not get in either
    assert await refusal(url, "mcp notes:read", origin="https://evil.example.com") == (
        FORBIDDEN_ORIGIN
    )


async def test_an_invalid_origin_is_403_before_auth_without_a_token(url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            url,
            content=rpc("tools/list"),
            headers={"origin": "https://evil.example.com", "content-type": "application/json"},
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == FORBIDDEN_ORIGIN


async def test_a_token_for_another_audience_is_refused(url: str) -> None:
    other = ISSUER.mint(aud="https://other.example.com", scope="mcp notes:read")
    async with httpx.AsyncClient() as http:
        response = await http.post(
            url,
            content=rpc("tools/list"),
            headers={"authorization": f"Bearer {other}", "content-type": "application/json"},
        )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def refusal(url: str, scopes: str | None, **headers: str) -> int:
    """The JSON-RPC error code the official client fails with while connecting."""
    try:
        async with connect(url, scopes, **headers) as client:
            await client.list_tools()
    except MCPError as exc:
        return exc.error.code
    except BaseExceptionGroup as group:  # the client's task group wraps what its tasks raise
        found = group.subgroup(lambda e: isinstance(e, MCPError))
        while isinstance(found, BaseExceptionGroup):
            found = found.exceptions[0]  # type: ignore[assignment]
        if not isinstance(found, MCPError):
            raise
        return found.error.code
    raise AssertionError("the client got in")


async def test_an_allowed_origin_gets_in(url: str) -> None:
    async with connect(url, "mcp notes:read", origin="http://localhost:6274") as client:
        assert (await client.call_tool("read_notes", {})).is_error is False


META = (
    '"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", '
    '"io.modelcontextprotocol/clientCapabilities": {}}'
)


@pytest.mark.parametrize(
    ("first", "last", "status"),
    [("add_note", "read_notes", 403), ("read_notes", "add_note", 200)],
)
async def test_a_duplicated_tool_name_is_judged_as_the_server_reads_it(
    url: str, first: str, last: str, status: int
) -> None:
    """Smuggling by duplicate keys: the guard and the SDK both take the last ``name``, so the
    tool authorised is the tool run (a caller with ``notes:write`` cannot reach ``read_notes``)."""
    body = (
        '{"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {'
        f'{META}, "name": "{first}", "arguments": {{"text": "x"}}, "name": "{last}"}}}}'
    )
    async with httpx.AsyncClient() as http:
        response = await http.post(
            url,
            content=body,
            headers={
                "authorization": f"Bearer {token('mcp notes:write')}",
                "content-type": "application/json",
                "accept": "application/json, text/event-stream",
                "mcp-protocol-version": "2026-07-28",
                "mcp-method": "tools/call",
                "mcp-name": last,
            },
        )
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"]["data"]["tool"] == "read_notes"
        # the guard's step-up challenge names the OAuth middleware's metadata
        assert f'resource_metadata="{METADATA}"' in response.headers["www-authenticate"]
    else:  # add_note ran (it answers a count), not read_notes (a list)
        assert isinstance(response.json()["result"]["structuredContent"]["result"], int)


async def test_a_tool_added_later_without_a_rule_stays_closed(url: str) -> None:
    """The recipe's promise: a tool the server gains without a scope rule is refused, even to
    a caller holding every scope, while the server lists it."""

    async def delete_notes() -> int:
        """Delete every note."""
        return 0

    server = SERVERS[-1]
    server.add_tool(delete_notes)
    try:
        async with connect(url, "mcp notes:write notes:read") as client:
            listed = {tool.name for tool in (await client.list_tools()).tools}
            with pytest.raises(MCPError) as refused:
                await client.call_tool("delete_notes", {})
    finally:
        server.remove_tool("delete_notes")
    assert "delete_notes" in listed
    assert refused.value.error.code == FORBIDDEN_TOOL
    assert refused.value.error.data == {"error": "tool_not_allowed", "tool": "delete_notes"}
