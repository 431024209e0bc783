"""The reference app's /mcp endpoint with the real SmolLM2 model and OAuth on, over a real
socket, driven by the official ``mcp`` client with tokens minted by the demo issuer; the REST
answers (openai SDK) are the yardstick."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from aimiddleware.mcp import FORBIDDEN_ORIGIN, FORBIDDEN_TOOL, HEADER_MISMATCH, INSUFFICIENT_SCOPE
from reference_app import Settings, create_app
from reference_app.auth import mint

from ..reference_app.conftest import MODEL, wait_ready
from ..servers import ThreadedServer, bound_socket, port_of
from ._helpers import rpc

pytestmark = [pytest.mark.anyio, pytest.mark.model, pytest.mark.e2e]

ALL_SCOPES = "mcp chat embeddings models:read"
_SETTINGS: dict[str, Settings] = {}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo as `make demo` runs it: OAuth on, its own development issuer."""
    sock = bound_socket()
    settings = Settings(
        port=port_of(sock), auth=True, auth_key_file=tmp_path_factory.mktemp("issuer") / "key.json"
    )
    with ThreadedServer(create_app(settings), sock=sock) as server:
        wait_ready(server.url)
        _SETTINGS[server.url] = settings
        yield server.url


def token(base_url: str, scopes: str) -> str:
    """An access token minted by the demo's issuer, as `python -m reference_app token` does."""
    return mint(_SETTINGS[base_url], scope=scopes, tier="agent", client_id="agent-7")


@asynccontextmanager
async def connect(
    base_url: str, scopes: str, on_request: Any = None, **headers: str
) -> AsyncIterator[Client]:
    headers["Authorization"] = f"Bearer {token(base_url, scopes)}"
    async with create_mcp_http_client(headers=headers) as http:
        if on_request is not None:
            http.event_hooks["request"].append(on_request)
        async with Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as client:
            yield client


def rest(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{base_url}/v1", api_key=token(base_url, ALL_SCOPES), max_retries=0
    )


async def test_the_tools_are_listed_with_schemas_and_the_scope_they_need(base_url: str) -> None:
    async with connect(base_url, "mcp") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {"chat", "embeddings", "list_models"}
    for name, scope in (("chat", "chat"), ("embeddings", "embeddings"), ("list_models", "models")):
        assert f"`{scope}" in (tools[name].description or ""), name
        assert tools[name].output_schema is not None
        assert tools[name].annotations is not None
        assert tools[name].annotations.read_only_hint is True
    chat = tools["chat"].input_schema
    assert chat["required"] == ["messages"]
    assert chat["properties"]["messages"]["minItems"] == 1
    message = chat["$defs"]["Message"]
    assert message["properties"]["role"]["enum"] == ["system", "user", "assistant"]
    assert tools["embeddings"].input_schema["properties"]["input"]["type"] == "array"


async def test_the_chat_tool_answers_with_the_real_model_as_the_rest_operation_does(
    base_url: str,
) -> None:
    messages = [{"role": "user", "content": "Name one colour of the rainbow."}]
    async with connect(base_url, "mcp chat") as client:
        result = await client.call_tool(
            "chat", {"messages": messages, "max_tokens": 24, "temperature": 0, "seed": 7}
        )
    assert not result.is_error
    reply = result.structured_content
    assert reply is not None
    assert reply["model"] == MODEL
    assert reply["usage"]["completion_tokens"] >= 1
    assert reply["finish_reason"] in ("stop", "length")
    assert reply["content"].strip()
    async with rest(base_url) as api:
        expected = await api.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=24,
            temperature=0,
            seed=7,  # type: ignore[arg-type]
        )
    # greedy decoding: the tool ran the same operation on the same model
    assert reply["content"] == expected.choices[0].message.content
    assert reply["usage"]["prompt_tokens"] == expected.usage.prompt_tokens  # type: ignore[union-attr]


async def test_the_embeddings_and_models_tools_match_the_rest_operations(base_url: str) -> None:
    async with connect(base_url, "mcp embeddings models:read") as client:
        vectors = await client.call_tool("embeddings", {"input": ["red", "a blue sky"]})
        models = await client.call_tool("list_models", {})
    async with rest(base_url) as api:
        expected = await api.embeddings.create(model=MODEL, input=["red", "a blue sky"])
        listed = await api.models.list()
    data = vectors.structured_content["data"]  # type: ignore[index]
    assert [d["index"] for d in data] == [0, 1]
    for got, want in zip(data, expected.data, strict=True):
        assert math.isclose(sum(x * x for x in got["embedding"]), 1.0, rel_tol=1e-4)
        assert got["embedding"] == pytest.approx(want.embedding, abs=1e-6)
    assert [m["id"] for m in models.structured_content["models"]] == [  # type: ignore[index]
        m.id for m in listed.data
    ]


async def test_an_operation_error_is_a_tool_error_with_the_openai_message(base_url: str) -> None:
    too_long = [{"role": "user", "content": "word " * 3000}]
    async with connect(base_url, "mcp chat") as client:
        result = await client.call_tool("chat", {"messages": too_long})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert "context_length_exceeded" in text
    assert "maximum context length" in text


@pytest.mark.parametrize(
    ("scopes", "tool", "arguments", "missing"),
    [
        (
            "mcp embeddings models:read",
            "chat",
            {"messages": [{"role": "user", "content": "hi"}]},
            "chat",
        ),
        ("mcp chat", "embeddings", {"input": ["x"]}, "embeddings"),
        ("mcp chat embeddings", "list_models", {}, "models:read"),
    ],
)
async def test_a_tool_without_its_scope_is_refused_naming_the_scope_to_ask_for(
    base_url: str, scopes: str, tool: str, arguments: dict[str, object], missing: str
) -> None:
    async with connect(base_url, scopes) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool(tool, arguments)
        # the refusal is per call: the session goes on
        assert (await client.list_tools()).tools
    assert refused.value.error.code == INSUFFICIENT_SCOPE
    assert refused.value.error.data["missing_scopes"] == [missing]  # type: ignore[index]
    assert refused.value.error.data["scope"] == f"mcp {missing}"  # type: ignore[index]


async def test_an_invalid_origin_is_403_and_an_allowed_one_passes(base_url: str) -> None:
    headers = {
        "authorization": f"Bearer {token(base_url, ALL_SCOPES)}",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
    }
    async with httpx.AsyncClient() as http:
        evil = await http.post(
            f"{base_url}/mcp",
            content=rpc("tools/list"),
            headers={**headers, "origin": "http://attacker.example:8000"},
        )
    assert evil.status_code == 403
    assert evil.json()["error"]["code"] == FORBIDDEN_ORIGIN
    async with connect(base_url, ALL_SCOPES, origin="http://localhost:6274") as client:
        assert (await client.call_tool("list_models", {})).is_error is False


async def test_the_rest_api_is_not_subject_to_the_mcp_origin_check(base_url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{base_url}/v1/models",
            headers={
                "origin": "http://attacker.example",
                "authorization": f"Bearer {token(base_url, 'models:read')}",
            },
        )
    assert response.status_code == 200


MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


async def test_without_a_token_the_client_discovers_the_metadata_from_the_401(
    base_url: str,
) -> None:
    """The MCP SDK's own discovery steps (RFC 9728, then RFC 8414) from the 401's challenge."""
    import httpx2
    from mcp.client.auth.utils import (
        build_protected_resource_metadata_discovery_urls,
        extract_resource_metadata_from_www_auth,
        extract_scope_from_www_auth,
        handle_protected_resource_response,
    )

    async with httpx2.AsyncClient() as http:
        refused = await http.post(f"{base_url}/mcp", content=rpc("tools/list"), headers=MCP_HEADERS)
        assert refused.status_code == 401
        assert extract_scope_from_www_auth(refused) == "mcp"
        advertised = extract_resource_metadata_from_www_auth(refused)
        assert advertised == f"{base_url}/.well-known/oauth-protected-resource"
        urls = build_protected_resource_metadata_discovery_urls(advertised, f"{base_url}/mcp")
        metadata = await handle_protected_resource_response(await http.get(urls[0]))
        assert metadata is not None
        assert str(metadata.resource).rstrip("/") == base_url
        assert "mcp" in (metadata.scopes_supported or [])
        (issuer,) = (str(url).rstrip("/") for url in metadata.authorization_servers)
        server = (await http.get(f"{issuer}/.well-known/oauth-authorization-server")).json()
    assert server["issuer"] == issuer
    assert "mcp" in server["scopes_supported"]


async def test_a_token_without_the_mcp_scope_is_refused_before_the_endpoint(base_url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base_url}/mcp",
            content=rpc("tools/list"),
            headers={**MCP_HEADERS, "authorization": f"Bearer {token(base_url, 'chat')}"},
        )
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="mcp"' in challenge


async def test_the_tool_scope_refusal_points_at_the_same_metadata_as_the_401(
    base_url: str,
) -> None:
    call = rpc("tools/call", {"name": "chat", "arguments": {"messages": []}}, id=3)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base_url}/mcp",
            content=call,
            headers={
                **MCP_HEADERS,
                "authorization": f"Bearer {token(base_url, 'mcp models:read')}",
                "mcp-protocol-version": "2026-07-28",
                "mcp-method": "tools/call",
                "mcp-name": "chat",
            },
        )
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="mcp chat"' in challenge
    assert f'resource_metadata="{base_url}/.well-known/oauth-protected-resource"' in challenge
    assert response.json()["id"] == 3
    assert response.json()["error"]["data"]["missing_scopes"] == ["chat"]


async def test_an_invalid_origin_is_403_before_auth_even_without_a_token(base_url: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base_url}/mcp",
            content=rpc("tools/list"),
            headers={**MCP_HEADERS, "origin": "http://attacker.example:8000"},
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == FORBIDDEN_ORIGIN
    assert "www-authenticate" not in response.headers


@pytest.fixture
def cli_token(base_url: str) -> str:
    """``python -m reference_app token`` with its default scopes, against the fixture's issuer."""
    settings = _SETTINGS[base_url]
    return subprocess.run(
        [sys.executable, "-m", "reference_app", "token", "--port", str(settings.port)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "AIMW_AUTH_KEY_FILE": str(settings.auth_key_file)},
        timeout=60,
    ).stdout.strip()


async def test_the_token_command_mints_a_token_that_reaches_the_tools_by_default(
    base_url: str, cli_token: str
) -> None:
    headers = {"Authorization": f"Bearer {cli_token}"}
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as client,
    ):
        models = await client.call_tool("list_models", {})
    assert models.structured_content["models"][0]["id"] == MODEL  # type: ignore[index]


async def test_rate_limits_apply_to_mcp_per_agent(tmp_path: Path) -> None:
    """The agent tier's request limit counts each agent's /mcp requests on its own."""
    sock = bound_socket()
    settings = Settings(
        port=port_of(sock),
        auth=True,
        auth_key_file=tmp_path / "key.json",
        agent_requests="3/minute",
    )

    def bearer(agent: str) -> dict[str, str]:
        minted = mint(settings, scope="mcp models:read", tier="agent", client_id=agent)
        return {**MCP_HEADERS, "authorization": f"Bearer {minted}"}

    with ThreadedServer(create_app(settings), sock=sock) as server:
        wait_ready(server.url)
        async with httpx.AsyncClient(base_url=server.url) as http:
            first = [
                await http.post("/mcp", content=rpc("tools/list", id=i), headers=bearer("agent-a"))
                for i in range(3)
            ]
            over = await http.post("/mcp", content=rpc("tools/list"), headers=bearer("agent-a"))
            other = await http.post("/mcp", content=rpc("tools/list"), headers=bearer("agent-b"))
    assert [r.status_code for r in first] == [200, 200, 200]
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) >= 1
    assert other.status_code == 200


async def test_the_sdk_clients_request_headers_agree_and_pass(base_url: str) -> None:
    """The real client speaks 2026-07-28: its Mcp-Method and Mcp-Name reach the guard and pass."""
    seen: list[dict[str, str]] = []

    async def record(request: Any) -> None:
        seen.append({k: v for k, v in request.headers.items() if k.startswith("mcp-")})

    async with connect(base_url, "mcp models:read", on_request=record) as client:
        result = await client.call_tool("list_models", {})
    assert not result.is_error
    calls = [h for h in seen if h.get("mcp-method") == "tools/call"]
    assert calls, seen
    assert calls[-1]["mcp-name"] == "list_models"
    assert calls[-1]["mcp-protocol-version"] == "2026-07-28"


@pytest.mark.parametrize("scopes", ["mcp models:read", ALL_SCOPES])
async def test_a_tool_smuggled_under_another_mcp_name_is_a_header_mismatch(
    base_url: str, scopes: str
) -> None:
    """A client that names an allowed tool in Mcp-Name while its body calls another is refused
    with the spec's error before any scope is looked at, whatever its token holds."""

    async def disguise(request: Any) -> None:
        if request.headers.get("mcp-name") == "chat":
            request.headers["mcp-name"] = "list_models"

    async with connect(base_url, scopes, on_request=disguise) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("chat", {"messages": [{"role": "user", "content": "hi"}]})
        assert (await client.call_tool("list_models", {})).is_error is False
    assert refused.value.error.code == HEADER_MISMATCH
    assert "Mcp-Name header value 'list_models' does not match body value 'chat'" in (
        refused.value.error.message
    )


async def test_a_tool_no_rule_maps_is_refused_before_the_server(base_url: str) -> None:
    async with connect(base_url, ALL_SCOPES) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("delete_everything", {})
    assert refused.value.error.code == FORBIDDEN_TOOL
    assert refused.value.error.data == {"error": "tool_not_allowed", "tool": "delete_everything"}


async def test_a_json_rpc_body_sent_with_put_is_checked_like_a_post(base_url: str) -> None:
    call = rpc("tools/call", {"name": "chat", "arguments": {"messages": []}}, id=4)
    async with httpx.AsyncClient() as http:
        response = await http.put(
            f"{base_url}/mcp",
            content=call,
            headers={**MCP_HEADERS, "authorization": f"Bearer {token(base_url, 'mcp')}"},
        )
    assert response.status_code == 403
    assert response.json()["id"] == 4
    assert response.json()["error"]["data"]["missing_scopes"] == ["chat"]
