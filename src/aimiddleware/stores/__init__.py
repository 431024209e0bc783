"""Stores: the small async key-value protocol behind idempotency, rate limits and replay caches.

Pick a backend by URL::

    from aimiddleware.stores import store_from_url

    store = store_from_url("memory://")                          # the default: one process
    store = store_from_url("redis://127.0.0.1:6379/0?prefix=api:")  # shared by every worker
    store = store_from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")
"""

from __future__ import annotations

from typing import Any

from ..exceptions import ConfigurationError
from ._base import Store
from .memory import MemoryStore

__all__ = ["MemoryStore", "RedisStore", "Store", "store_from_url"]


def store_from_url(url: str, **options: Any) -> Store:
    """Build a store from a URL: ``memory://``, ``redis://``, ``rediss://``, ``unix://``,
    ``redis+cluster://`` or ``rediss+cluster://``.

    Keyword options go to the backend: ``max_entries=`` and ``max_bytes=`` for memory (its
    bounds), ``prefix=`` and ``timeout=`` for Redis.

    :raises ConfigurationError: unknown scheme, malformed URL, or the ``redis`` extra missing.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        unknown = sorted(set(options) - {"max_entries", "max_bytes"})
        if unknown:
            raise ConfigurationError(
                f"the memory store takes max_entries and max_bytes only, got {unknown}"
            )
        return MemoryStore(**options)
    if scheme in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
        from .redis import RedisStore

        return RedisStore.from_url(url, **options)
    # name only the scheme: the rest of a URL may carry a password
    raise ConfigurationError(
        f"unknown store URL scheme {scheme!r}: "
        "use memory://, redis://, rediss://, unix:// or redis+cluster://"
    )


def __getattr__(name: str) -> Any:
    # RedisStore imports nothing from redis at module level, but keep it lazy so that
    # `import aimiddleware.stores` stays cheap for memory-only users.
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(name)
