"""Redis clients: one per store URL, shared by every middleware that names it.

:func:`open_redis` hands out a :class:`RedisLease` on the client of a URL: the first lease
builds the ``redis.asyncio`` client (single node or cluster) and its bounded calls
(:class:`RedisCalls`); later ones for the same connection, timeout and ``max_connections``, in
the same event loop, get the same client. Each user closes its own lease; the last close
closes the client. So an idempotency store and a rate limiter on one Redis URL hold one
connection pool, and shutting one of them down leaves the other working.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from ..exceptions import ConfigurationError, StoreUnavailable
from .url import DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, StoreURL

__all__ = [
    "RedisCalls",
    "RedisLease",
    "SharedRedis",
    "cluster_socket_timeout",
    "open_redis",
    "own_redis",
]

T = TypeVar("T")

# a Cluster command that outlasts the caller's timeout ends at the latest after this many
# timeouts, and never sooner than the floor (seconds)
_OUTLAST_FACTOR: Final = 4
_OUTLAST_FLOOR: Final = 2.0


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

    __slots__ = ("_client", "_cluster", "_outlasting", "_places", "_timeout", "loop")

    def __init__(self, client: Any, *, timeout: float, max_in_flight: int = 100) -> None:
        from redis.asyncio.cluster import RedisCluster

        self._client = client
        self._timeout = timeout
        self._cluster = isinstance(client, RedisCluster)
        self._places = asyncio.Semaphore(max_in_flight)
        self._outlasting: set[asyncio.Future[Any]] = set()
        # the event loop of the first call: the client's connections belong to it
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def timeout(self) -> float:
        return self._timeout

    async def __call__(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
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


class SharedRedis:
    """A client and its bounded calls, with the count of the leases still open on it."""

    __slots__ = ("__weakref__", "call", "client", "key", "users")

    def __init__(self, client: Any, call: RedisCalls, key: object = None) -> None:
        self.client = client
        self.call = call
        self.key = key
        self.users = 0

    def lease(self) -> RedisLease:
        self.users += 1
        return RedisLease(self)

    async def _release(self) -> None:
        self.users -= 1
        if self.users > 0:
            return
        if self.key is not None and _CLIENTS.get(self.key) is self:
            del _CLIENTS[self.key]
        await self.call.aclose()


class RedisLease:
    """One user's hold on a :class:`SharedRedis`: ``client`` and ``call`` are the shared ones;
    :meth:`aclose` gives the hold back (once), the last one closes the client."""

    __slots__ = ("_closed", "shared")

    def __init__(self, shared: SharedRedis) -> None:
        self.shared = shared
        self._closed = False

    @property
    def client(self) -> Any:
        return self.shared.client

    @property
    def call(self) -> RedisCalls:
        return self.shared.call

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.shared._release()


# live clients by (connection key, timeout, max_connections, event loop); an entry goes when
# its last lease closes, or with its last user
_CLIENTS: weakref.WeakValueDictionary[object, SharedRedis] = weakref.WeakValueDictionary()


def own_redis(client: Any, *, timeout: float, max_in_flight: int = 100) -> RedisLease:
    """A lease on a client the caller built: not shared, closed by its one lease."""
    call = RedisCalls(client, timeout=timeout, max_in_flight=max_in_flight)
    return SharedRedis(client, call).lease()


def open_redis(
    url: StoreURL, *, timeout: float | None = None, max_connections: int | None = None
) -> RedisLease:
    """A lease on the one client of ``url`` (a ``redis``/``cluster`` backend).

    ``timeout`` and ``max_connections``, when given, win over the URL's; by default 0.5 s and
    100. Clients built in different event loops are kept apart: a connection belongs to one.

    :raises ConfigurationError: the ``redis`` package is missing.
    """
    if url.backend == "memory":
        raise ConfigurationError("memory:// has no Redis client")
    seconds = timeout if timeout is not None else url.timeout or DEFAULT_TIMEOUT
    limit = max_connections or url.max_connections or DEFAULT_MAX_CONNECTIONS
    try:
        loop: object = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    key = (url.key, float(seconds), limit, loop)
    shared = _CLIENTS.get(key)
    if shared is not None and shared.call.loop is not None and shared.call.loop.is_closed():
        shared = None  # built outside a loop and used in one that has ended: start afresh
    if shared is None:
        client = _build(url, seconds, limit)
        shared = SharedRedis(client, RedisCalls(client, timeout=seconds, max_in_flight=limit), key)
        _CLIENTS[key] = shared
    return shared.lease()


def _build(url: StoreURL, timeout: float, max_connections: int) -> Any:
    try:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.cluster import ClusterNode, RedisCluster
    except ImportError as exc:  # pragma: no cover (exercised only without the extra)
        raise ConfigurationError(
            "Redis stores need the redis package: pip install 'aimiddleware[redis]'"
        ) from exc
    if url.backend == "cluster":
        # RedisCalls bounds the commands under way (max_in_flight), so the nodes' own pools
        # are left unbounded: before redis-py 7 a connection lost on a write error still
        # counts against a node's pool and would end in MaxConnectionsError for good.
        socket_timeout = cluster_socket_timeout(timeout)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in url.nodes],
            username=url.username,
            password=url.password,
            ssl=url.ssl,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
        )
    try:
        pool = BlockingConnectionPool.from_url(
            url.redis_url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    except (ValueError, TypeError) as exc:
        # name only the scheme: the rest of a URL may carry a password
        raise ConfigurationError(
            f"cannot open the {url.scheme}:// store URL: {type(exc).__name__}"
        ) from None
    return Redis.from_pool(pool)
