"""aimiddleware: composable pure-ASGI middlewares for AI-facing REST APIs.

Idempotency keys, agent-tier rate limits, an OAuth 2.1 resource server, SSE-safe streaming,
one error shape everywhere and OpenTelemetry tracing, for Starlette and FastAPI apps that serve
LLMs to people and to autonomous agents.
"""

from __future__ import annotations

from .exceptions import AimiddlewareError, ConfigurationError, StoreUnavailable
from .mcp import MCPOriginMiddleware, MCPScopeMiddleware
from .principal import Principal, get_principal, set_principal
from .stores import MemoryStore, Store, store_from_url

__version__ = "0.1.0"

__all__ = [
    "AimiddlewareError",
    "ConfigurationError",
    "MCPOriginMiddleware",
    "MCPScopeMiddleware",
    "MemoryStore",
    "Principal",
    "Store",
    "StoreUnavailable",
    "__version__",
    "get_principal",
    "set_principal",
    "store_from_url",
]
