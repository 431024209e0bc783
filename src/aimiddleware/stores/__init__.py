"""Stores: the small async key-value protocol behind idempotency, rate limits and replay caches.

Pick a backend by URL (the grammar and its options: :mod:`aimiddleware.stores.url`)::

    from aimiddleware.stores import store_from_url

    store = store_from_url("memory://")                          # the default: one process
    store = store_from_url("redis://127.0.0.1:6379/0?prefix=api:&timeout=1")  # every worker
    store = store_from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")

Every middleware that names the same Redis URL shares one client
(:func:`aimiddleware.stores.clients.open_redis`).
"""

from __future__ import annotations

from typing import Any

from ..exceptions import ConfigurationError
from ._base import Store
from .memory import MemoryStore
from .url import SCHEMES, StoreURL, parse_store_url

__all__ = [
    "SCHEMES",
    "MemoryStore",
    "RedisStore",
    "Store",
    "StoreURL",
    "parse_store_url",
    "store_from_url",
]


def store_from_url(url: str, **options: Any) -> Store:
    """Build a store from a URL: ``memory://``, ``redis://``, ``rediss://``, ``redis+unix://``
    (``unix://``), ``redis+cluster://`` or ``rediss+cluster://``.

    Keyword options win over the URL's: ``max_entries=`` and ``max_bytes=`` for memory (its
    bounds), ``prefix=``, ``timeout=`` and ``max_connections=`` for Redis.

    :raises ConfigurationError: unknown scheme, malformed URL or option, or the ``redis``
        extra missing. The message never carries the URL (it may carry a password).
    """
    parsed = parse_store_url(url)
    if parsed.backend == "memory":
        unknown = sorted(set(options) - {"max_entries", "max_bytes"})
        if unknown:
            raise ConfigurationError(
                f"the memory store takes max_entries and max_bytes only, got {unknown}"
            )
        bounds: dict[str, Any] = {"max_entries": parsed.max_entries, "max_bytes": parsed.max_bytes}
        return MemoryStore(**({k: v for k, v in bounds.items() if v is not None} | options))
    unknown = sorted(set(options) - {"prefix", "timeout", "max_connections"})
    if unknown:
        raise ConfigurationError(
            f"a Redis store takes prefix, timeout and max_connections, got {unknown}"
        )
    from .redis import RedisStore

    return RedisStore.from_url(parsed, **options)


def __getattr__(name: str) -> Any:
    # RedisStore imports nothing from redis at module level, but keep it lazy so that
    # `import aimiddleware.stores` stays cheap for memory-only users.
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(name)
