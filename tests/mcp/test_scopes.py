"""MCPScopeMiddleware on raw ASGI messages: who may reach the endpoint, which tool, and how
a refusal looks (status, challenge, JSON-RPC error)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aimiddleware import ConfigurationError, Principal
from aimiddleware._asgi import get_annotations, read_body
from aimiddleware.context import set_challenger
from aimiddleware.mcp import INSUFFICIENT_SCOPE, UNAUTHORIZED, MCPScopeMiddleware

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


def challenge(exchange: Exchange) -> dict[str, str]:
    raw = exchange.header(b"www-authenticate")
    assert raw is not None
    scheme, _, rest = raw.decode().partition(" ")
    assert scheme == "Bearer"
    params = {}
    for part in rest.split('", '):
        key, _, value = part.partition("=")
        params[key.strip()] = value.strip('"')
    return params


async def test_no_principal_is_401_with_the_endpoint_scope_and_the_metadata_url() -> None:
    ex = Exchange()
    ex.sent = await run(guarded(ex), http_scope(), rpc("tools/list"))
    assert ex.status == 401
    assert not ex.app_called
    assert challenge(ex) == {"scope": "mcp", "resource_metadata": METADATA}
    assert ex.header(b"content-type") == b"application/json"
    assert ex.header(b"cache-control") == b"no-store"
    body = ex.json()
    assert body["jsonrpc"] == "2.0"
    assert body["id"] is None
    assert body["error"]["code"] == UNAUTHORIZED
    assert body["error"]["data"] == {"error": "unauthorized", "scope": "mcp"}


async def test_principal_without_the_endpoint_scope_is_403_insufficient_scope() -> None:
    ex = Exchange()
    scope = http_scope(principal=agent("chat"))
    ex.sent = await run(guarded(ex), scope, rpc("tools/list", id=4))
    assert ex.status == 403
    assert not ex.app_called
    params = challenge(ex)
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "mcp"
    assert params["resource_metadata"] == METADATA
    body = ex.json()
    assert body["id"] == 4
    assert body["error"]["code"] == INSUFFICIENT_SCOPE
    assert body["error"]["data"]["missing_scopes"] == ["mcp"]


async def test_tool_without_its_scope_is_refused_naming_the_scope_to_ask_for() -> None:
    ex = Exchange()
    call = rpc("tools/call", {"name": "chat", "arguments": {}}, id="call-9")
    scope = http_scope(principal=agent("mcp", "models:read"))
    ex.sent = await run(guarded(ex), scope, call)
    assert ex.status == 403
    assert not ex.app_called
    # step-up: every scope this request needs, not only the missing one (RFC 6750 3.1)
    assert challenge(ex)["scope"] == "mcp chat"
    error = ex.json()["error"]
    assert ex.json()["id"] == "call-9"
    assert error["code"] == INSUFFICIENT_SCOPE
    assert "'chat' needs the scope chat" in error["message"]
    assert error["data"] == {
        "error": "insufficient_scope",
        "scope": "mcp chat",
        "missing_scopes": ["chat"],
        "tool": "chat",
    }
    annotations = get_annotations(scope)
    assert annotations["aimiddleware.mcp.outcome"] == "insufficient_scope"
    assert annotations["aimiddleware.mcp.tool"] == "chat"


async def test_tool_with_its_scope_reaches_the_app_with_the_body_intact() -> None:
    ex = Exchange()
    call = rpc("tools/call", {"name": "chat", "arguments": {"messages": []}}, id=2)
    scope = http_scope(principal=agent("mcp", "chat"))
    ex.sent = await run(guarded(ex), scope, call)
    assert ex.status == 200
    assert ex.app_body == call
    annotations = get_annotations(scope)
    assert annotations["aimiddleware.mcp.method"] == "tools/call"
    assert annotations["aimiddleware.mcp.tool"] == "chat"
    assert annotations["aimiddleware.mcp.outcome"] == "allowed"


async def test_a_body_in_several_chunks_is_checked_whole_and_replayed_whole() -> None:
    ex = Exchange()
    call = rpc("tools/call", {"name": "chat", "arguments": {"text": "x" * 5000}})
    chunks = [call[:7], call[7:4000], call[4000:]]
    ex.sent = await run(guarded(ex), http_scope(principal=agent("mcp")), chunks)
    assert ex.status == 403
    ex2 = Exchange()
    ex2.sent = await run(guarded(ex2), http_scope(principal=agent("mcp", "chat")), chunks)
    assert ex2.app_body == call


async def test_methods_other_than_tools_call_need_only_the_endpoint_scope() -> None:
    for method in ("server/discover", "initialize", "tools/list", "ping"):
        ex = Exchange()
        ex.sent = await run(guarded(ex), http_scope(principal=agent("mcp")), rpc(method))
        assert ex.status == 200, method


async def test_method_scopes_apply_to_that_method() -> None:
    ex = Exchange()
    mw = guarded(ex, methods={"resources/read": ["files:read"]})
    body = rpc("resources/read", {"uri": "file:///a"})
    ex.sent = await run(mw, http_scope(principal=agent("mcp")), body)
    assert ex.status == 403
    assert challenge(ex)["scope"] == "mcp files:read"
    assert "resources/read needs the scope files:read" in ex.json()["error"]["message"]


@pytest.mark.parametrize(
    ("options", "status"),
    [
        ({}, 403),
        ({"allow_unmapped_tools": True}, 200),
        ({"allow_unmapped_tools": True, "default_tool_scopes": ["admin"]}, 403),
    ],
    ids=["closed", "open", "open-with-admin"],
)
async def test_tools_missing_from_the_map_are_closed_unless_allowed(
    options: dict[str, Any], status: int
) -> None:
    ex = Exchange()
    mw = guarded(ex, **options)
    body = rpc("tools/call", {"name": "delete_everything"})
    ex.sent = await run(mw, http_scope(principal=agent("mcp")), body)
    assert ex.status == status


async def test_a_batch_is_refused_whole_when_one_call_is_not_allowed() -> None:
    ex = Exchange()
    batch = json.dumps(
        [
            json.loads(rpc("tools/call", {"name": "list_models"}, id=1)),
            json.loads(rpc("tools/call", {"name": "chat"}, id=2)),
        ]
    ).encode()
    ex.sent = await run(guarded(ex), http_scope(principal=agent("mcp", "models:read")), batch)
    assert ex.status == 403
    assert not ex.app_called
    assert ex.json()["id"] is None
    assert challenge(ex)["scope"] == "mcp models:read chat"


async def test_a_body_that_is_not_json_is_refused_not_passed_unchecked() -> None:
    ex = Exchange()
    ex.sent = await run(guarded(ex), http_scope(principal=agent("mcp", "chat")), b"{oops")
    assert ex.status == 400
    assert not ex.app_called
    assert ex.json()["error"]["code"] == -32700


async def test_a_body_over_max_body_is_413() -> None:
    ex = Exchange()
    body = rpc("tools/call", {"name": "chat", "arguments": {"text": "x" * 200}})
    ex.sent = await run(guarded(ex, max_body=100), http_scope(principal=agent("mcp", "chat")), body)
    assert ex.status == 413
    assert not ex.app_called
    assert ex.json()["error"]["code"] == -32600


async def test_get_and_delete_need_the_endpoint_scope() -> None:
    for method in ("GET", "DELETE"):
        ok, refused = Exchange(), Exchange()
        ok.sent = await run(guarded(ok), http_scope(method, principal=agent("mcp")))
        refused.sent = await run(guarded(refused), http_scope(method, principal=agent("chat")))
        assert ok.status == 200
        assert refused.status == 403
        assert refused.json()["error"]["message"].endswith("this MCP server needs the scope mcp")


async def test_a_client_that_leaves_before_its_body_gets_nothing_and_the_app_is_not_called() -> (
    None
):
    ex = Exchange()
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await guarded(ex)(http_scope(principal=agent("mcp", "chat")), receive, send)
    assert sent == []
    assert not ex.app_called


async def test_the_body_is_read_once_and_shared_with_inner_middlewares() -> None:
    seen: list[bytes] = []
    call = rpc("tools/call", {"name": "chat"})

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        body, _ = await read_body(scope, receive)
        seen.append(body)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = await run(
        MCPScopeMiddleware(inner, tools=TOOLS), http_scope(principal=agent("mcp", "chat")), call
    )
    assert sent[0]["status"] == 204
    assert seen == [call]


async def test_non_http_scopes_pass_straight_through() -> None:
    reached: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    mw = MCPScopeMiddleware(inner, tools=TOOLS)
    await mw({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert reached == ["lifespan"]


async def test_realm_and_no_metadata_shape_the_challenge() -> None:
    ex = Exchange()
    mw = MCPScopeMiddleware(recording_app(ex), realm="mcp-api")
    ex.sent = await run(mw, http_scope(), rpc("tools/list"))
    assert ex.header(b"www-authenticate") == b'Bearer realm="mcp-api", scope="mcp"'


@pytest.mark.parametrize(
    "options",
    [
        {"scopes": "mcp"},
        {"scopes": ["two words"]},
        {"tools": {"chat": ['quo"te']}},
        {"tools": {"chat": "chat"}},
        {"default_tool_scopes": ["a\\b"], "allow_unmapped_tools": True},
        {"methods": {"resources/read": [""]}},
        {"resource_metadata": "/.well-known/oauth-protected-resource"},
        {"max_body": 0},
        {"max_body": True},
    ],
)
def test_bad_options_raise_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        MCPScopeMiddleware(recording_app(Exchange()), **options)


def test_repr_shows_the_rules() -> None:
    text = repr(MCPScopeMiddleware(recording_app(Exchange()), tools=TOOLS))
    assert "'chat': ['chat']" in text
    assert "scopes=['mcp']" in text


async def test_an_overlong_tool_name_is_cut_in_the_refusal_and_the_annotations() -> None:
    ex = Exchange()
    name = "t" * 5000
    scope = http_scope(principal=agent("mcp"))
    ex.sent = await run(guarded(ex), scope, rpc("tools/call", {"name": name}))
    assert ex.status == 403
    assert len(ex.header(b"www-authenticate") or b"") < 600
    assert ex.json()["error"]["data"]["tool"] == "t" * 125 + "..."
    assert get_annotations(scope)["aimiddleware.mcp.tool"] == "t" * 125 + "..."


async def test_an_event_stream_answer_goes_out_as_it_is_produced() -> None:
    """Neither guard holds back the server's SSE answer: the head and the first event reach
    the client while the app is still producing."""
    import anyio

    from aimiddleware.mcp import MCPOriginMiddleware

    release = anyio.Event()
    first_event_out = anyio.Event()
    sent: list[Any] = []

    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": b"event: message\n\n", "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    app = MCPOriginMiddleware(
        MCPScopeMiddleware(streaming, tools=TOOLS), allowed_origins=["https://chat.example.com"]
    )
    scope = http_scope(
        headers=[(b"origin", b"https://chat.example.com")], principal=agent("mcp", "chat")
    )
    messages = [{"type": "http.request", "body": rpc("tools/call", {"name": "chat"})}]

    async def receive() -> Any:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)
        if len(sent) == 2:
            first_event_out.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(app, scope, receive, send)
        with anyio.fail_after(5):
            await first_event_out.wait()
        assert not release.is_set()
        assert sent[0]["status"] == 200
        assert sent[1]["body"] == b"event: message\n\n"
        release.set()
    assert sent[-1]["more_body"] is False


class OAuthChallengeSettingsStandIn:
    """Stands in for the challenger OAuthMiddleware leaves in the scope: its two settings."""

    resource_metadata = "https://api.example.com/.well-known/oauth-protected-resource"
    realm = "api"

    def headers(self, error: object) -> list[tuple[bytes, bytes]]:
        raise AssertionError("the MCP guard writes its own challenge from the two settings")


async def test_without_its_own_metadata_the_oauth_middlewares_settings_are_used() -> None:
    ex = Exchange()
    scope = http_scope(principal=agent("mcp"))
    set_challenger(scope, OAuthChallengeSettingsStandIn())
    mw = MCPScopeMiddleware(recording_app(ex), tools=TOOLS)
    ex.sent = await run(mw, scope, rpc("tools/call", {"name": "chat"}))
    params = challenge(ex)
    assert params["resource_metadata"] == OAuthChallengeSettingsStandIn.resource_metadata
    assert params["realm"] == "api"
    # an explicit option wins
    ex2 = Exchange()
    scope2 = http_scope(principal=agent("mcp"))
    set_challenger(scope2, OAuthChallengeSettingsStandIn())
    ex2.sent = await run(guarded(ex2), scope2, rpc("tools/call", {"name": "chat"}))
    assert challenge(ex2)["resource_metadata"] == METADATA
