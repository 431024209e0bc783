"""What MCP authorization 2026-07-28 asks of a resource server about scopes: a broader scope
satisfies the narrower ones it implies, and no challenge asks for ``offline_access``."""

from __future__ import annotations

from typing import Any

import pytest

from aimiddleware import ConfigurationError, Principal
from aimiddleware.mcp import INSUFFICIENT_SCOPE, MCPScopeMiddleware

from ._helpers import Exchange, http_scope, recording_app, rpc, run

pytestmark = pytest.mark.anyio

TOOLS = {"read_file": ["files:read"], "write_file": ["files:write"], "chat": ["chat"]}
IMPLIED = {"files": ["files:read", "files:write"], "admin": ["files", "chat"]}


def agent(*scopes: str) -> Principal:
    return Principal(id="agent-7", scopes=frozenset(scopes), tier="agent")


async def call(tool: str, *granted: str, **options: Any) -> Exchange:
    ex = Exchange()
    options.setdefault("implied_scopes", IMPLIED)
    mw = MCPScopeMiddleware(recording_app(ex), tools=TOOLS, **options)
    ex.sent = await run(
        mw, http_scope(principal=agent(*granted)), rpc("tools/call", {"name": tool})
    )
    return ex


@pytest.mark.parametrize(
    ("tool", "granted"),
    [
        ("read_file", ("mcp", "files")),
        ("write_file", ("mcp", "files")),
        ("write_file", ("mcp", "admin")),  # admin -> files -> files:write
        ("chat", ("mcp", "admin")),
        ("read_file", ("mcp", "files:read")),  # the narrow scope itself still works
    ],
)
async def test_a_broader_scope_satisfies_the_narrower_ones_it_implies(
    tool: str, granted: tuple[str, ...]
) -> None:
    assert (await call(tool, *granted)).status == 200


async def test_a_narrower_scope_does_not_satisfy_a_broader_one_nor_a_sibling() -> None:
    ex = await call("write_file", "mcp", "files:read")
    assert ex.status == 403
    assert ex.json()["error"]["code"] == INSUFFICIENT_SCOPE
    assert ex.json()["error"]["data"]["missing_scopes"] == ["files:write"]
    # the challenge still names the scope the operation needs, not the broader one
    assert b'scope="mcp files:write"' in (ex.header(b"www-authenticate") or b"")


async def test_a_broader_scope_can_imply_the_endpoint_scope() -> None:
    ex = await call("chat", "everything", implied_scopes={"everything": ["mcp", "chat"]})
    assert ex.status == 200


async def test_without_implied_scopes_a_broader_scope_is_just_another_scope() -> None:
    ex = await call("read_file", "mcp", "files", implied_scopes=None)
    assert ex.status == 403


@pytest.mark.parametrize(
    "options",
    [
        {"implied_scopes": {"files": "files:read"}},
        {"implied_scopes": {"two words": ["x"]}},
        {"implied_scopes": ["files"]},
        {"scopes": ["mcp", "offline_access"]},
        {"tools": {"chat": ["offline_access"]}},
        {"methods": {"resources/read": ["offline_access"]}},
    ],
)
def test_bad_scope_options_raise_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        MCPScopeMiddleware(recording_app(Exchange()), **options)
