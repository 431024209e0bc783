from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..exceptions import ConfigurationError, StoreUnavailable
from ._base import Store

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["RedisStore"]

logger = logging.getLogger("aimiddleware.stores")

T = TypeVar("T")

# Each script touches only keys of one logical record: KEYS[1] the value, KEYS[2] its chunk log.
# Both share a hash tag, so the scripts run in one Redis Cluster slot.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_REPLACE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""
_INCR = """
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return total
"""
_APPEND = """
local length = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return length
"""

_OUR_QUERY_OPTIONS = ("prefix", "timeout", "max_connections")
# a Cluster command that outlasts the caller's timeout ends at the latest after this many
# timeouts, and never sooner than the floor (seconds)
_OUTLAST_FACTOR = 4
_OUTLAST_FLOOR = 2.0


def cluster_socket_timeout(timeout: float) -> float:
    """The socket timeouts of a Cluster client whose calls :class:`RedisCalls` bounds by
    ``timeout``: longer, because on a socket timeout redis-py's cluster client drops every
    connection of every node, failing all the other commands under way."""
    return max(_OUTLAST_FACTOR * timeout, _OUTLAST_FLOOR)


class RedisCalls:
    """One ``redis.asyncio`` client's commands, each bounded by ``timeout`` seconds; any Redis or
    network fault, or the timeout, raises ``StoreUnavailable``.

    On a Cluster, at most ``max_in_flight`` commands are under way at once (callers beyond wait
    for a place, within the timeout: the cluster client itself refuses at once when a node's
    pool is full), and a command that outlasts the timeout is left to finish, holding its
    place, rather than cancelled: before redis-py 7 a cluster command cancelled while it writes
    (a new connection's handshake, say) strands its connection for good. A single-node client
    is called directly: its pool waits for a free connection and takes a cancelled one back.
    """

    __slots__ = ("_client", "_cluster", "_outlasting", "_places", "_timeout")

    def __init__(self, client: Any, *, timeout: float, max_in_flight: int = 100) -> None:
        from redis.asyncio.cluster import RedisCluster

        self._client = client
        self._timeout = timeout
        self._cluster = isinstance(client, RedisCluster)
        self._places = asyncio.Semaphore(max_in_flight)
        self._outlasting: set[asyncio.Future[Any]] = set()

    async def __call__(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                if not self._cluster:
                    return await call()
                await self._places.acquire()
                # nothing awaits between the acquire and the done callback: the place is given
                # back exactly once, when the command ends, even one that outlasts the timeout
                command = asyncio.ensure_future(call())
                self._outlasting.add(command)
                command.add_done_callback(self._ended)
                return await asyncio.shield(command)
        except (TimeoutError, OSError) as exc:
            raise StoreUnavailable(
                f"redis {operation} failed: {type(exc).__name__}",
                operation=operation,
                backend="redis",
            ) from exc
        except Exception as exc:
            from redis.exceptions import RedisError

            if isinstance(exc, RedisError):
                raise StoreUnavailable(
                    f"redis {operation} failed: {type(exc).__name__}: {exc}",
                    operation=operation,
                    backend="redis",
                ) from exc
            raise

    def _ended(self, command: asyncio.Future[Any]) -> None:
        self._outlasting.discard(command)
        self._places.release()
        if not command.cancelled():
            command.exception()  # retrieved: a caller that timed out has had its answer

    async def aclose(self) -> None:
        """Cancel the commands still under way, then close the client."""
        for command in list(self._outlasting):
            command.cancel()
        await asyncio.gather(*self._outlasting, return_exceptions=True)
        await self._client.aclose()


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


class RedisStore(Store):
    """A store on Redis or Redis Cluster through ``redis.asyncio``, shared by every worker.

    One round trip per primitive (a Lua script where several steps must be atomic). Keys are
    ``<prefix>{<key>}`` for the value and ``<prefix>{<key>}:log`` for the chunk log: the hash tag
    keeps one logical record in one Cluster slot. Every call is bounded by ``timeout`` seconds;
    any Redis or network fault, or the timeout, raises ``StoreUnavailable``. On a Cluster,
    ``max_in_flight`` bounds the commands under way and one that outlasts the timeout finishes
    rather than being cancelled (see :class:`RedisCalls`).

    >>> from redis.asyncio import Redis
    >>> store = RedisStore(Redis(host="127.0.0.1", port=6379), prefix="myapp:")

    Usually built from a URL with :func:`aimiddleware.stores.store_from_url`.
    """

    backend: ClassVar[str] = "redis"
    shared: ClassVar[bool] = True

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = "aimw:",
        timeout: float = 0.5,
        max_in_flight: int = 100,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError("the Redis key prefix must not contain '{' or '}'")
        if not timeout > 0:
            raise ConfigurationError("the Redis store timeout must be a positive number of seconds")
        if max_in_flight < 1:
            raise ConfigurationError("max_in_flight must be at least 1")
        # redis-py's annotations mix its sync, async and cluster clients; the store only calls
        # what both async clients share
        self._client: Any = cast(Any, client)
        self._prefix = prefix
        self._timeout = float(timeout)
        self._call = RedisCalls(client, timeout=self._timeout, max_in_flight=max_in_flight)
        self._claim = self._client.register_script(_CLAIM)
        self._renew = self._client.register_script(_RENEW)
        self._replace = self._client.register_script(_REPLACE)
        self._release = self._client.register_script(_RELEASE)
        self._incr = self._client.register_script(_INCR)
        self._append = self._client.register_script(_APPEND)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """Build a store from ``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://``.

        The query parameters ``prefix``, ``timeout`` and ``max_connections`` are the store's own;
        the rest go to redis-py. A cluster URL lists its seed nodes:
        ``redis+cluster://h1:7000,h2:7001``.

        Callers beyond ``max_connections`` (default 100) commands under way wait for a place,
        within the store timeout: on a single node for a pooled connection, on a cluster for one
        of that many places shared by its nodes.
        """
        try:
            from redis.asyncio import BlockingConnectionPool, Redis
            from redis.asyncio.cluster import ClusterNode, RedisCluster
        except ImportError as exc:  # pragma: no cover (exercised only without the extra)
            raise ConfigurationError(
                "the Redis store needs the redis package: pip install 'aimiddleware[redis]'"
            ) from exc
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in _OUR_QUERY_OPTIONS}
        theirs = [(k, v) for k, v in query if k not in _OUR_QUERY_OPTIONS]
        if "timeout" in ours:
            try:
                options.setdefault("timeout", float(ours["timeout"]))
            except ValueError as exc:
                raise ConfigurationError(
                    f"invalid timeout in store URL: {ours['timeout']!r}"
                ) from exc
        if "prefix" in ours:
            options.setdefault("prefix", ours["prefix"])
        max_connections = options.pop("max_connections", ours.get("max_connections", 100))
        try:
            max_connections = int(max_connections)
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid max_connections in store URL: {max_connections!r}"
            ) from exc
        if max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        timeout = float(options.get("timeout", 0.5))
        scheme = parts.scheme.lower()
        client: Redis | RedisCluster
        if scheme in ("redis+cluster", "rediss+cluster"):
            nodes = []
            for netloc in parts.netloc.rsplit("@", 1)[-1].split(","):
                host, _, port = netloc.rpartition(":")
                if not host or not port.isdigit():
                    raise ConfigurationError(f"invalid cluster node {netloc!r} in store URL")
                nodes.append(ClusterNode(host.strip("[]"), int(port)))
            auth = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
            username, _, password = auth.partition(":")
            # The store bounds the commands under way (max_in_flight), so the nodes' own pools
            # are left unbounded: before redis-py 7 a connection lost on a write error still
            # counts against a node's pool and would end in MaxConnectionsError for good.
            socket_timeout = cluster_socket_timeout(timeout)
            client = RedisCluster(
                startup_nodes=nodes,
                username=username or None,
                password=password or None,
                ssl=scheme == "rediss+cluster",
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
            )
            options.setdefault("max_in_flight", max_connections)
        elif scheme in ("redis", "rediss", "unix"):
            plain = urlunsplit(parts._replace(query=urlencode(theirs)))
            pool = BlockingConnectionPool.from_url(
                plain,
                max_connections=max_connections,
                timeout=timeout,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
            client = Redis.from_pool(pool)
        else:
            raise ConfigurationError(f"not a Redis URL: scheme {parts.scheme!r}")
        return cls(client, **options)

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
        await self._call.aclose()

    def __repr__(self) -> str:
        # never the URL: it may carry a password
        client = type(self._client).__name__
        return f"RedisStore(client={client}, prefix={self._prefix!r}, timeout={self._timeout})"
