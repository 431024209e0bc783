"""MCPOriginMiddleware on raw ASGI messages: the MCP transport's 403 for an invalid Origin."""

from __future__ import annotations

from typing import Any

import pytest

from aimiddleware import ConfigurationError
from aimiddleware._asgi import get_annotations
from aimiddleware._urls import normalize_url
from aimiddleware.mcp import FORBIDDEN_ORIGIN, MCPOriginMiddleware

from ._helpers import Exchange, http_scope, recording_app, rpc, run

pytestmark = pytest.mark.anyio

ALLOWED = ["https://chat.example.com", "http://localhost:*"]


async def request(origins: list[bytes], **options: Any) -> Exchange:
    options.setdefault("allowed_origins", ALLOWED)
    ex = Exchange()
    path = options.pop("path", "/mcp")
    scope = http_scope(path=path, headers=[(b"origin", o) for o in origins])
    ex.sent = await run(MCPOriginMiddleware(recording_app(ex), **options), scope, rpc("ping"))
    ex.app_scope = ex.app_scope or scope
    return ex


@pytest.mark.parametrize(
    "origin",
    [
        b"https://chat.example.com",
        b"HTTPS://Chat.Example.com:443",
        b"https://chat.example.com/",
        b"http://localhost:6274",
        b"http://localhost",
    ],
)
async def test_allowed_origins_pass(origin: bytes) -> None:
    ex = await request([origin])
    assert ex.app_called
    assert ex.status == 200
    assert ex.app_body == rpc("ping")


@pytest.mark.parametrize(
    "origin",
    [
        b"https://evil.example.com",
        b"http://chat.example.com",  # another scheme is another origin
        b"https://chat.example.com:8443",
        b"https://localhost:6274",
        b"http://localhost.evil.com:6274",
        b"null",
        b"https://chat.example.com/path",
        b"https://user@chat.example.com",
        b"garbage",
        b"",
    ],
)
async def test_other_origins_get_403_with_a_json_rpc_error_without_id(origin: bytes) -> None:
    ex = await request([origin])
    assert not ex.app_called
    assert ex.status == 403
    assert ex.header(b"content-type") == b"application/json"
    body = ex.json()
    assert body["jsonrpc"] == "2.0"
    assert body["id"] is None
    assert body["error"]["code"] == FORBIDDEN_ORIGIN
    assert body["error"]["data"] == {"error": "forbidden_origin"}
    assert get_annotations(ex.app_scope or {})["aimiddleware.mcp.outcome"] == "forbidden_origin"


async def test_two_origin_headers_are_refused() -> None:
    ex = await request([b"https://chat.example.com", b"https://evil.example.com"])
    assert ex.status == 403


async def test_no_origin_passes_unless_allow_missing_is_off() -> None:
    assert (await request([])).app_called
    refused = await request([], allow_missing=False)
    assert refused.status == 403
    assert not refused.app_called


async def test_paths_limit_the_check_to_those_prefixes() -> None:
    evil = [b"https://evil.example.com"]
    assert (await request(evil, paths=["/mcp"], path="/v1/models")).app_called
    assert (await request(evil, paths=["/mcp"], path="/mcpx")).app_called
    assert (await request(evil, paths=["/mcp"], path="/mcp")).status == 403
    assert (await request(evil, paths=["/mcp/"], path="/mcp/sub")).status == 403


async def test_non_http_scopes_pass_straight_through() -> None:
    reached: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    mw = MCPOriginMiddleware(inner, allowed_origins=ALLOWED)
    await mw({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await mw({"type": "websocket", "headers": [(b"origin", b"https://evil")]}, None, None)  # type: ignore[arg-type]
    assert reached == ["lifespan", "websocket"]


@pytest.mark.parametrize(
    "options",
    [
        {"allowed_origins": ["*"]},
        {"allowed_origins": "https://chat.example.com"},
        {"allowed_origins": ["https://chat.example.com/app"]},
        {"allowed_origins": ["chat.example.com"]},
        {"allowed_origins": ["ftp://chat.example.com"]},
        {"allowed_origins": ["http://localhost:8000:*"]},
        {"paths": "/mcp"},
        {"paths": ["mcp"]},
        {"paths": []},
    ],
)
def test_bad_options_raise_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        MCPOriginMiddleware(recording_app(Exchange()), **options)


def test_repr_lists_the_allowed_origins() -> None:
    text = repr(MCPOriginMiddleware(recording_app(Exchange()), allowed_origins=ALLOWED))
    assert "https://chat.example.com" in text
    assert "http://localhost:*" in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://a.example:443", "https://a.example"),
        ("http://a.example:80", "http://a.example"),
        ("http://a.example:8080", "http://a.example:8080"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("http://a.example:99999", None),
        ("null", None),
    ],
)
def test_origins_are_normalised(value: str, expected: str | None) -> None:
    assert normalize_url(value, origin=True) == expected


async def test_verdicts_stay_right_and_bounded_under_many_distinct_origins() -> None:
    ex = Exchange()
    mw = MCPOriginMiddleware(recording_app(ex), allowed_origins=ALLOWED)
    for i in range(1500):
        sent = await run(mw, http_scope(headers=[(b"origin", f"https://x{i}.example".encode())]))
        assert sent[0]["status"] == 403
    assert len(mw._verdicts) <= 1024  # client-chosen values cannot grow it without bound
    allowed = await run(mw, http_scope(headers=[(b"origin", b"https://chat.example.com")]))
    assert allowed[0]["status"] == 200
    again = await run(mw, http_scope(headers=[(b"origin", b"https://x3.example")]))
    assert again[0]["status"] == 403
