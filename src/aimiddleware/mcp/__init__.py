"""Protect any MCP server (Streamable HTTP transport) with the library's middlewares.

Two pure-ASGI guards, no dependency on an MCP SDK:

- :class:`MCPOriginMiddleware`: 403 for a request whose ``Origin`` is not allowed (the MCP
  transport's DNS-rebinding defence);
- :class:`MCPScopeMiddleware`: the scopes of the caller's principal per endpoint, per tool and
  per JSON-RPC method, with the MCP authorization spec's 401/403 challenges; tools without a
  rule are refused, and the ``Mcp-Method``/``Mcp-Name`` headers must agree with the body.

::

    from aimiddleware.mcp import MCPOriginMiddleware, MCPScopeMiddleware

    endpoint = MCPOriginMiddleware(
        MCPScopeMiddleware(mcp_asgi_app, tools={"chat": ["chat"]}),
        allowed_origins=["https://chat.example.com"],
    )

See docs/mcp.md for the recipe with the OAuth middleware in front.
"""

from __future__ import annotations

from ._jsonrpc import (
    FORBIDDEN_ORIGIN,
    FORBIDDEN_TOOL,
    HEADER_MISMATCH,
    INSUFFICIENT_SCOPE,
    UNAUTHORIZED,
)
from ._options import MCPScopeOptions
from ._origin import MCPOriginMiddleware, MCPOriginOptions
from .middleware import MCPScopeMiddleware

__all__ = [
    "FORBIDDEN_ORIGIN",
    "FORBIDDEN_TOOL",
    "HEADER_MISMATCH",
    "INSUFFICIENT_SCOPE",
    "UNAUTHORIZED",
    "MCPOriginMiddleware",
    "MCPOriginOptions",
    "MCPScopeMiddleware",
    "MCPScopeOptions",
]
