"""The MCP guards take their options as keywords or as one frozen, validated object."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from aimiddleware import ConfigurationError
from aimiddleware.mcp import (
    INSUFFICIENT_SCOPE,
    MCPOriginMiddleware,
    MCPOriginOptions,
    MCPScopeMiddleware,
    MCPScopeOptions,
)

from ._helpers import Exchange, http_scope, recording_app, rpc, run
from .test_unmapped_and_methods import agent

pytestmark = pytest.mark.anyio


async def test_a_scope_options_object_configures_the_guard() -> None:
    options = MCPScopeOptions(tools={"chat": ["chat"]}, realm="mcp")
    ex = Exchange()
    mw = MCPScopeMiddleware(recording_app(ex), config=options)
    assert mw.config is options
    ex.sent = await run(mw, http_scope(principal=agent("mcp")), rpc("tools/call", {"name": "chat"}))
    assert ex.status == 403
    assert ex.json()["error"]["code"] == INSUFFICIENT_SCOPE
    assert b'realm="mcp"' in (ex.header(b"www-authenticate") or b"")


def test_keywords_build_the_same_object() -> None:
    mw = MCPScopeMiddleware(None, scopes=["mcp"], tools={"chat": ["chat"]}, max_body=1024)
    assert mw.config == MCPScopeOptions(tools={"chat": ("chat",)}, max_body=1024)
    assert mw.config.tools == {"chat": ("chat",)}


def test_config_and_keywords_at_once_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="config= or options"):
        MCPScopeMiddleware(None, config=MCPScopeOptions(), max_body=10)
    with pytest.raises(ConfigurationError, match="config= or options"):
        MCPOriginMiddleware(None, config=MCPOriginOptions(), allow_missing=False)


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        MCPScopeOptions().max_body = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        MCPOriginOptions().allow_missing = False  # type: ignore[misc]


@pytest.mark.parametrize(
    "make",
    [
        lambda: MCPScopeOptions(scopes="mcp"),
        lambda: MCPScopeOptions(max_body=0),
        lambda: MCPScopeOptions(max_body=True),
        lambda: MCPScopeOptions(allow_unmapped_tools=1),
        lambda: MCPScopeOptions(resource_metadata="/relative"),
        lambda: MCPScopeOptions(implied_scopes={"files": "files:read"}),
        lambda: MCPOriginOptions(allowed_origins=["*"]),
        lambda: MCPOriginOptions(allow_missing="no"),
        lambda: MCPOriginOptions(paths="/mcp"),
        lambda: MCPOriginOptions(paths=[]),
    ],
)
def test_bad_options_raise_configuration_error(make: Any) -> None:
    with pytest.raises(ConfigurationError):
        make()


async def test_an_origin_options_object_configures_the_guard() -> None:
    options = MCPOriginOptions(allowed_origins=["HTTPS://Chat.Example.com:443"])
    assert options.allowed_origins == ("https://chat.example.com",)
    ex = Exchange()
    mw = MCPOriginMiddleware(recording_app(ex), config=options)
    scope = http_scope(headers=[(b"origin", b"https://chat.example.com")])
    ex.sent = await run(mw, scope, rpc("tools/list"))
    assert ex.status == 200
    ex2 = Exchange()
    scope = http_scope(headers=[(b"origin", b"https://evil.example")])
    ex2.sent = await run(MCPOriginMiddleware(recording_app(ex2), config=options), scope, b"")
    assert ex2.status == 403


@pytest.mark.parametrize("cls", [MCPScopeMiddleware, MCPOriginMiddleware])
def test_the_signature_shows_every_option(cls: type) -> None:
    options = {MCPScopeMiddleware: MCPScopeOptions, MCPOriginMiddleware: MCPOriginOptions}[cls]
    parameters = inspect.signature(cls).parameters
    for field in dataclasses.fields(options):
        assert parameters[field.name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[field.name].default == field.default
