"""aimiddleware: composable pure-ASGI middlewares for AI-facing REST APIs.

Idempotency keys, agent-tier rate limits, an OAuth 2.1 resource server, SSE-safe streaming,
one error shape everywhere and OpenTelemetry tracing, for Starlette and FastAPI apps that serve
LLMs to people and to autonomous agents.
"""

from __future__ import annotations

import typing as _typing

from .exceptions import AimiddlewareError, ConfigurationError, StoreUnavailable
from .principal import Principal, get_principal, set_principal
from .stores import MemoryStore, Store, store_from_url

__version__ = "0.1.0"

__all__ = [
    "AimiddlewareError",
    "ConfigurationError",
    "MemoryStore",
    "Principal",
    "RateLimitMiddleware",
    "Store",
    "StoreUnavailable",
    "__version__",
    "get_principal",
    "set_principal",
    "store_from_url",
]

if _typing.TYPE_CHECKING:
    from .ratelimit import RateLimitMiddleware

# middlewares whose extra may be missing: imported on first use, so `import aimiddleware`
# needs no optional dependency
_LAZY = {"RateLimitMiddleware": "ratelimit"}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aimiddleware' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
