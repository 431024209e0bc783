"""Store URLs: the one grammar every middleware that keeps state reads its backend from.

``scheme://[user:password@]host:port[,host:port...]/db?option=value&...``

The scheme picks the backend (:data:`SCHEMES`); the query parameters below are the library's
own and are parsed here, once, for every middleware: the idempotency store
(:func:`aimiddleware.stores.store_from_url`) and the rate limiter's engine take the same URLs.
Every other query parameter of a Redis URL goes to redis-py unchanged.

``timeout``
    seconds one Redis call may take (default 0.5); also the sockets' timeouts.
``prefix``
    the key prefix of a :class:`~aimiddleware.stores.Store` (default ``aimw:``).
``max_connections``
    Redis calls under way at once per client (default 100); callers beyond wait for a place.
``max_entries`` (``max_keys``), ``max_bytes``
    the bounds of a ``memory://`` backend.

A :class:`StoreURL` never shows its password: not in ``repr``, not in an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._config import check_int, check_seconds
from ..exceptions import ConfigurationError

__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_TIMEOUT", "SCHEMES", "StoreURL", "parse_store_url"]

Backend = Literal["memory", "redis", "cluster"]

#: every scheme a store URL may have, and the backend it names (``unix`` is ``redis+unix``)
SCHEMES: Final[dict[str, Backend]] = {
    "memory": "memory",
    "redis": "redis",
    "rediss": "redis",
    "redis+unix": "redis",
    "unix": "redis",
    "redis+cluster": "cluster",
    "rediss+cluster": "cluster",
}
DEFAULT_TIMEOUT: Final = 0.5
DEFAULT_MAX_CONNECTIONS: Final = 100

_REDIS_OPTIONS: Final = ("prefix", "timeout", "max_connections")
_MEMORY_OPTIONS: Final = ("max_entries", "max_keys", "max_bytes")


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL. Options left out of the URL are ``None``.

    ``redis_url`` is what redis-py opens for a single node (the library's own parameters taken
    out, ``redis+unix`` spelled ``unix``); ``nodes`` are a cluster's seed nodes. ``key`` names
    the connection: two URLs with the same key share one client (see
    :func:`aimiddleware.stores.clients.open_redis`).
    """

    scheme: str
    backend: Backend
    timeout: float | None = None
    prefix: str | None = None
    max_connections: int | None = None
    max_entries: int | None = None
    max_bytes: int | None = None
    redis_url: str = field(default="", repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    key: str = field(default="", repr=False)

    @property
    def ssl(self) -> bool:
        return self.scheme.startswith("rediss")


def _whole(name: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigurationError(
            f"{name} in a store URL must be an integer, got {text!r}"
        ) from None
    return check_int(name, value, minimum=minimum)


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(f"{name} in a store URL must be seconds, got {text!r}") from None
    return check_seconds(name, value)


def _single(query: list[tuple[str, str]], names: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in query:
        if name in names:
            if name in found:
                raise ConfigurationError(f"{name} is given twice in a store URL")
            found[name] = value
    return found


def parse_store_url(url: str) -> StoreURL:
    """Parse and validate ``url``; see the module's documentation for the grammar.

    >>> parse_store_url("redis://127.0.0.1:6379/0?timeout=2&prefix=app:").timeout
    2.0
    >>> parse_store_url("memory://?max_entries=1000").max_entries
    1000

    :raises ConfigurationError: unknown scheme, malformed URL or option; the message names
        the scheme and the option, never the rest of the URL (it may carry a password).
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            "a store URL needs a scheme: memory:// or redis://host:6379/0, for example"
        )
    scheme = url.split("://", 1)[0].lower()
    backend = SCHEMES.get(scheme)
    if backend is None:
        # name only the scheme: the rest of a URL may carry a password
        raise ConfigurationError(
            f"unknown store URL scheme {scheme!r}: use memory://, redis://, rediss://, "
            "redis+unix://, redis+cluster:// or rediss+cluster://"
        )
    scheme = "redis+unix" if scheme == "unix" else scheme
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigurationError(f"malformed {scheme}:// store URL") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    if backend == "memory":
        return _memory(parts.netloc + parts.path, query)
    ours = _single(query, _REDIS_OPTIONS)
    theirs = sorted((k, v) for k, v in query if k not in _REDIS_OPTIONS)
    prefix = ours.get("prefix")
    if prefix is not None and ("{" in prefix or "}" in prefix):
        raise ConfigurationError("the Redis key prefix must not contain '{' or '}'")
    timeout = _seconds("timeout", ours["timeout"]) if "timeout" in ours else None
    limit = ours.get("max_connections")
    max_connections = None if limit is None else _whole("max_connections", limit, 1)
    if backend == "redis":
        plain = parts._replace(
            scheme="unix" if scheme == "redis+unix" else scheme, query=urlencode(theirs)
        )
        redis_url = urlunsplit(plain)
        return StoreURL(
            scheme, backend, timeout, prefix, max_connections, redis_url=redis_url, key=redis_url
        )
    auth, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for netloc in hosts.split(","):
        host, _, port = netloc.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"invalid cluster node {netloc!r} in a store URL")
        nodes.append((host.strip("[]").lower(), int(port)))
    username, _, password = auth.partition(":")
    key = f"{scheme}://{auth}@{','.join(f'{h}:{p}' for h, p in sorted(nodes))}"
    return StoreURL(
        scheme,
        backend,
        timeout,
        prefix,
        max_connections,
        nodes=tuple(nodes),
        username=username or None,
        password=password or None,
        key=key,
    )


def _memory(rest: str, query: list[tuple[str, str]]) -> StoreURL:
    if rest:
        raise ConfigurationError("a memory store URL has no host or path: memory://?max_entries=N")
    unknown = sorted({k for k, _ in query} - set(_MEMORY_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"a memory store URL takes max_entries (or max_keys) and max_bytes, got {unknown}"
        )
    ours = _single(query, _MEMORY_OPTIONS)
    if "max_entries" in ours and "max_keys" in ours:
        raise ConfigurationError("give max_entries or max_keys (the same bound), not both")
    entries = ours.get("max_entries", ours.get("max_keys"))
    name = "max_keys" if "max_keys" in ours else "max_entries"
    return StoreURL(
        scheme="memory",
        backend="memory",
        max_entries=None if entries is None else _whole(name, entries, 1),
        max_bytes=None if "max_bytes" not in ours else _whole("max_bytes", ours["max_bytes"], 1),
    )
