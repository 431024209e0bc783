"""The engine for a store URL: the same URLs, and the same shared Redis client, as the stores'."""

from __future__ import annotations

from .._config import check_seconds
from ..exceptions import ConfigurationError
from ..stores.url import StoreURL, parse_store_url
from ._engine import Engine
from ._memory import DEFAULT_MAX_KEYS, MemoryEngine

__all__ = ["engine_from_url"]


def engine_from_url(url: str | StoreURL, *, strategy: str, timeout: float | None = None) -> Engine:
    """The engine for a store URL (:mod:`aimiddleware.stores.url`).

    ``memory://`` counts in this process (``memory://?max_entries=N``, or its older spelling
    ``max_keys=N``, bounds each of its tables, 100,000 keys by default; ``max_bytes`` is the
    memory store's and not used here). ``redis://``, ``rediss://``, ``redis+unix://``
    (``unix://``), ``redis+cluster://`` and ``rediss+cluster://`` are shared by every worker,
    on the client every middleware naming the same URL shares
    (:func:`aimiddleware.stores.clients.open_redis`). ``limits``' ``async+redis://...``
    spellings are read as the same URLs without ``async+``.

    ``timeout`` bounds each call (and the sockets; longer on a cluster, see ``RedisCalls``):
    given here, it wins over the URL's ``timeout=``; ``None`` takes the URL's, else 0.5 s.
    """
    if isinstance(url, str) and url[:6].lower() == "async+":
        url = url[6:]
    parsed = url if isinstance(url, StoreURL) else parse_store_url(url)
    if timeout is not None:
        timeout = check_seconds("timeout", timeout)
    if parsed.backend == "memory":
        return MemoryEngine(strategy, parsed.max_entries or DEFAULT_MAX_KEYS)
    try:
        from ..stores.clients import open_redis
        from ._redis import RedisEngine
    except ImportError as exc:  # pragma: no cover (exercised only without the extra)
        raise ConfigurationError(
            "Redis storage needs the redis package: pip install 'aimiddleware[redis,ratelimit]'"
        ) from exc
    return RedisEngine(open_redis(parsed, timeout=timeout), strategy=strategy)
