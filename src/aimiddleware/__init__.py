"""aimiddleware: composable pure-ASGI middlewares for AI-facing REST APIs.

Idempotency keys, agent-tier rate limits, an OAuth 2.1 resource server, SSE-safe streaming,
one error shape everywhere and OpenTelemetry tracing, for Starlette and FastAPI apps that serve
LLMs to people and to autonomous agents.
"""

from __future__ import annotations

import typing as _typing

from .context import get_principal, set_principal
from .exceptions import AimiddlewareError, ConfigurationError, StoreUnavailable
from .guard import RequestGuardMiddleware
from .idempotency import IdempotencyMiddleware
from .mcp import MCPOriginMiddleware, MCPScopeMiddleware
from .normalize import NormalizeMiddleware, NormalizeRoute
from .principal import Principal
from .sse import SSEMiddleware
from .stores import MemoryStore, Store, store_from_url

if _typing.TYPE_CHECKING:
    from .oauth import APIKey, APIKeys, DPoP, Introspection, OAuthMiddleware, ScopeRule
    from .ratelimit import RateLimitMiddleware
    from .tracing import TracingMiddleware

__version__ = "0.1.0"

# names whose subpackage needs an optional extra: imported on first use, so that
# `import aimiddleware` works without the extra installed
_LAZY = {
    "APIKey": "oauth",
    "APIKeys": "oauth",
    "DPoP": "oauth",
    "Introspection": "oauth",
    "OAuthMiddleware": "oauth",
    "RateLimitMiddleware": "ratelimit",
    "ScopeRule": "oauth",
    "TracingMiddleware": "tracing",
}

__all__ = [
    "APIKey",
    "APIKeys",
    "AimiddlewareError",
    "ConfigurationError",
    "DPoP",
    "IdempotencyMiddleware",
    "Introspection",
    "MCPOriginMiddleware",
    "MCPScopeMiddleware",
    "MemoryStore",
    "NormalizeMiddleware",
    "NormalizeRoute",
    "OAuthMiddleware",
    "Principal",
    "RateLimitMiddleware",
    "RequestGuardMiddleware",
    "SSEMiddleware",
    "ScopeRule",
    "Store",
    "StoreUnavailable",
    "TracingMiddleware",
    "__version__",
    "get_principal",
    "set_principal",
    "store_from_url",
]


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aimiddleware' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
