"""Benchmark configurations of the MCP guards: Origin validation and per-tool scopes.

The request is a JSON-RPC ``tools/call`` for ``chat`` from an allowed origin, so the measured
path is the one every allowed MCP call takes: the Origin check, the body read once and parsed
once, the scope check, the body replayed to the app.
"""

from __future__ import annotations

import json
from typing import Any

from aimiddleware import Principal, set_principal
from aimiddleware.mcp import MCPOriginMiddleware, MCPScopeMiddleware

from .apps import ASGIApp, Config, bare_app

ORIGIN = "https://chat.example.com"
TOOL_CALL = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "chat",
            "arguments": {"messages": [{"role": "user", "content": "Say hello."}]},
        },
    }
)
LUA = "\n".join(
    [
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(TOOL_CALL)}",
        'wrk.headers["Content-Type"] = "application/json"',
        'wrk.headers["Accept"] = "application/json, text/event-stream"',
        f'wrk.headers["Origin"] = "{ORIGIN}"',
    ]
)
AGENT = Principal(id="bench-agent", scopes=frozenset({"mcp", "chat"}), tier="agent")


class FixedPrincipalForBenchmark:
    """Benchmark only: stands in for the auth middleware, one fixed principal for everyone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            set_principal(scope, AGENT)
        await self.app(scope, receive, send)


def _scopes(app: ASGIApp) -> ASGIApp:
    return MCPScopeMiddleware(app, tools={"chat": ["chat"], "embeddings": ["embeddings"]})


def _origin(app: ASGIApp) -> ASGIApp:
    return MCPOriginMiddleware(app, allowed_origins=[ORIGIN, "http://localhost:*"])


_GUARDS = (
    (
        "mcp:principal",
        lambda: FixedPrincipalForBenchmark(bare_app()),
        "the fixed-principal stand-in alone (what the others add to)",
    ),
    ("mcp:origin", lambda: _origin(bare_app()), "MCPOriginMiddleware, allowed Origin"),
    (
        "mcp:scopes",
        lambda: FixedPrincipalForBenchmark(_scopes(bare_app())),
        "MCPScopeMiddleware, allowed tools/call (body read, parsed, replayed)",
    ),
    (
        "mcp:guards",
        lambda: FixedPrincipalForBenchmark(_origin(_scopes(bare_app()))),
        "both guards, as around the reference app's /mcp",
    ),
)
CONFIGS = [
    Config(name, factory, group="mcp", lua=LUA, description=description)
    for name, factory, description in _GUARDS
]
