"""The Redis store: the :class:`~aimiddleware.stores.Store` primitives on a shared client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from .._config import check_int, check_seconds, check_text
from ..exceptions import ConfigurationError
from . import _scripts
from ._base import Store
from .clients import RedisCalls, RedisLease, cluster_socket_timeout, open_redis, own_redis
from .url import StoreURL, parse_store_url

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

# RedisCalls and cluster_socket_timeout live in .clients; kept importable from here
__all__ = ["RedisCalls", "RedisStore", "cluster_socket_timeout"]

_DEFAULT_PREFIX = "aimw:"


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


def _check_prefix(value: Any) -> str:
    prefix: str = check_text("prefix", value, empty=True)
    if "{" in prefix or "}" in prefix:
        raise ConfigurationError("the Redis key prefix must not contain '{' or '}'")
    return prefix


class RedisStore(Store):
    """A store on Redis or Redis Cluster through ``redis.asyncio``, shared by every worker.

    One round trip per primitive (a Lua script where several steps must be atomic). Keys are
    ``<prefix>{<key>}`` for the value and ``<prefix>{<key>}:log`` for the chunk log: the hash tag
    keeps one logical record in one Cluster slot. Every call is bounded by ``timeout`` seconds;
    any Redis or network fault, or the timeout, raises ``StoreUnavailable``. On a Cluster,
    ``max_in_flight`` bounds the commands under way and one that outlasts the timeout finishes
    rather than being cancelled (see :class:`~aimiddleware.stores.clients.RedisCalls`).

    >>> from redis.asyncio import Redis
    >>> store = RedisStore(Redis(host="127.0.0.1", port=6379), prefix="myapp:")

    Usually built from a URL with :func:`aimiddleware.stores.store_from_url`, on the client that
    every middleware naming the same URL shares (:mod:`aimiddleware.stores.clients`).
    """

    backend: ClassVar[str] = "redis"
    shared: ClassVar[bool] = True

    def __init__(
        self,
        client: Redis | RedisCluster | RedisLease,
        *,
        prefix: str = _DEFAULT_PREFIX,
        timeout: float = 0.5,
        max_in_flight: int = 100,
    ) -> None:
        self._prefix = _check_prefix(prefix)
        if isinstance(client, RedisLease):
            self._lease = client
        else:
            check_seconds("timeout", timeout)
            check_int("max_in_flight", max_in_flight, minimum=1)
            self._lease = own_redis(client, timeout=float(timeout), max_in_flight=max_in_flight)
        # redis-py's annotations mix its sync, async and cluster clients; the store only calls
        # what both async clients share
        self._client: Any = self._lease.client
        self._call = self._lease.call
        self._claim = self._client.register_script(_scripts.CLAIM)
        self._renew = self._client.register_script(_scripts.RENEW)
        self._replace = self._client.register_script(_scripts.REPLACE)
        self._release = self._client.register_script(_scripts.RELEASE)
        self._incr = self._client.register_script(_scripts.INCR)
        self._append = self._client.register_script(_scripts.APPEND)

    @classmethod
    def from_url(
        cls,
        url: str | StoreURL,
        *,
        prefix: str | None = None,
        timeout: float | None = None,
        max_connections: int | None = None,
    ) -> RedisStore:
        """A store on the shared client of a ``redis://``, ``rediss://``, ``redis+unix://``
        (``unix://``), ``redis+cluster://`` or ``rediss+cluster://`` URL.

        The URL's ``prefix``, ``timeout`` and ``max_connections`` (see
        :mod:`aimiddleware.stores.url`) are the store's own, the keywords win over them; the
        other query parameters go to redis-py. A cluster URL lists its seed nodes:
        ``redis+cluster://h1:7000,h2:7001``. Callers beyond ``max_connections`` (default 100)
        commands under way wait for a place, within the timeout.
        """
        parsed = url if isinstance(url, StoreURL) else parse_store_url(url)
        if parsed.backend == "memory":
            raise ConfigurationError(f"not a Redis URL: scheme {parsed.scheme!r}")
        if timeout is not None:
            check_seconds("timeout", timeout)
        if max_connections is not None:
            check_int("max_connections", max_connections, minimum=1)
        if prefix is None:
            prefix = _DEFAULT_PREFIX if parsed.prefix is None else parsed.prefix
        chosen = _check_prefix(prefix)
        lease = open_redis(parsed, timeout=timeout, max_connections=max_connections)
        return cls(lease, prefix=chosen)

    @property
    def client(self) -> Any:
        """The ``redis.asyncio`` client, shared with every middleware on the same URL."""
        return self._client

    @property
    def timeout(self) -> float:
        return self._call.timeout

    # -- internals ---------------------------------------------------------------------------

    def _keys(self, key: str) -> list[str]:
        value = f"{self._prefix}{{{key}}}"
        return [value, value + ":log"]

    # -- primitives --------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        value = self._keys(key)[0]
        result: bytes | None = await self._call("get", lambda: self._client.get(value))
        return result

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        name = self._keys(key)[0]
        await self._call("set", lambda: self._client.set(name, value, px=_ms(ttl)))

    async def delete(self, key: str) -> None:
        keys = self._keys(key)
        await self._call("delete", lambda: self._client.delete(*keys))

    async def claim(self, key: str, value: bytes, ttl: float) -> bytes | None:
        keys = self._keys(key)[:1]
        result: bytes | None = await self._call(
            "claim", lambda: self._claim(keys, [value, _ms(ttl)])
        )
        return result or None

    async def renew(self, key: str, expected: bytes, ttl: float) -> bool:
        keys = self._keys(key)[:1]
        return bool(await self._call("renew", lambda: self._renew(keys, [expected, _ms(ttl)])))

    async def replace(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        keys = self._keys(key)[:1]
        args: list[bytes | int] = [expected, value, _ms(ttl)]
        return bool(await self._call("replace", lambda: self._replace(keys, args)))

    async def release(self, key: str, expected: bytes) -> bool:
        keys = self._keys(key)
        return bool(await self._call("release", lambda: self._release(keys, [expected])))

    async def incr(self, key: str, amount: int, ttl: float) -> int:
        keys = self._keys(key)[:1]
        return int(await self._call("incr", lambda: self._incr(keys, [amount, _ms(ttl)])))

    async def append(self, key: str, chunk: bytes, ttl: float) -> int:
        keys = self._keys(key)[1:]
        return int(await self._call("append", lambda: self._append(keys, [chunk, _ms(ttl)])))

    async def chunks(self, key: str, start: int = 0) -> list[bytes]:
        log = self._keys(key)[1]
        result = await self._call("chunks", lambda: self._client.lrange(log, start, -1))
        return list(result)

    async def ping(self) -> None:
        await self._call("ping", lambda: self._client.ping())

    async def aclose(self) -> None:
        """Give back this store's hold on the client; the last user's close closes it."""
        await self._lease.aclose()

    def __repr__(self) -> str:
        # never the URL: it may carry a password
        client = type(self._client).__name__
        return f"RedisStore(client={client}, prefix={self._prefix!r}, timeout={self.timeout})"
