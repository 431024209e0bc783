"""Storage by URL, through ``limits``: ``memory://``, ``redis://``, ``redis+cluster://``."""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs

from ..exceptions import ConfigurationError
from ._engine import Engine
from ._memory import DEFAULT_MAX_KEYS, MemoryEngine

__all__ = ["engine_from_url"]

_REDIS: Final = {
    "redis": "async+redis",
    "rediss": "async+rediss",
    "unix": "async+redis+unix",
    "redis+unix": "async+redis+unix",
    "redis+cluster": "async+redis+cluster",
}


def _memory_max_keys(rest: str) -> int:
    path, _, query = rest.partition("?")
    options = parse_qs(query, keep_blank_values=True)
    if path or set(options) - {"max_keys"}:
        raise ConfigurationError("a memory storage URL is memory:// or memory://?max_keys=N")
    values = options.get("max_keys", [str(DEFAULT_MAX_KEYS)])
    if len(values) != 1 or not values[0].isdigit() or int(values[0]) < 1:
        raise ConfigurationError("max_keys of memory:// must be a whole number of at least 1")
    return int(values[0])


def engine_from_url(url: str, *, strategy: str, timeout: float) -> Engine:
    """``memory://`` counts in this process (``memory://?max_keys=N`` bounds each of its tables,
    100,000 keys by default); ``redis://``/``rediss://``/``unix://`` and
    ``redis+cluster://h1:p1,h2:p2`` (or ``limits``' own ``async+redis...`` forms) are shared.

    The Redis client is the ``redis.asyncio`` one that ``limits`` builds for the URL
    (``implementation="redispy"``); each call is bounded by ``timeout`` as the stores' are, and
    the sockets by that many seconds (longer on a cluster, see ``RedisCalls``).
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError("storage must be a URL such as memory:// or redis://host:6379/0")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower().removeprefix("async+")
    if scheme == "memory":
        return MemoryEngine(strategy, _memory_max_keys(rest))
    if scheme not in _REDIS:
        # name only the scheme: the rest of a URL may carry a password
        raise ConfigurationError(
            f"unknown rate limit storage scheme {scheme!r}: use memory://, redis://, "
            "rediss://, unix:// or redis+cluster://"
        )
    try:
        from limits.storage import storage_from_string

        from ..stores.redis import cluster_socket_timeout
        from ._redis import RedisEngine
    except ImportError as exc:  # pragma: no cover (exercised only without the extra)
        raise ConfigurationError(
            "Redis storage needs the redis package: pip install 'aimiddleware[redis,ratelimit]'"
        ) from exc
    # a Cluster command may outlast the engine's timeout (see RedisCalls): its sockets wait longer
    socket_timeout = cluster_socket_timeout(timeout) if scheme == "redis+cluster" else timeout
    options: dict[str, float | str | bool] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
    }
    try:
        storage = storage_from_string(
            f"{_REDIS[scheme]}://{rest}", implementation="redispy", **options
        )
    except Exception as exc:
        raise ConfigurationError(
            f"cannot open rate limit storage {scheme}://...: {type(exc).__name__}"
        ) from exc
    # the redispy bridge's client: the script runs on the connection limits manages
    client = getattr(storage, "bridge").get_connection()  # noqa: B009 (not in the base type)
    return RedisEngine(client, strategy=strategy, timeout=timeout)
