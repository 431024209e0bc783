"""The middleware's options, written once: a frozen dataclass validated when it is built."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from .._asgi import HOP_BY_HOP_HEADERS
from .._config import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_seconds,
    check_text,
)
from .._paths import PathSet
from ..context import Scope
from ..exceptions import ConfigurationError
from ..stores import MemoryStore, Store, store_from_url

__all__ = [
    "DEFAULT_NO_STORE_STATUSES",
    "DEFAULT_TYPE_BASE",
    "NEVER_STORED_HEADERS",
    "NEVER_STORED_PREFIX",
    "IdempotencyOptions",
    "PrincipalResolver",
    "stored_header",
]

PrincipalResolver = Callable[[Scope], "str | None"]

DEFAULT_NO_STORE_STATUSES: Final = frozenset({429, *range(500, 600)})
DEFAULT_TYPE_BASE: Final = (
    "https://github.com/aimiddleware/aimiddleware/blob/main/docs/idempotency.md"
)
NEVER_STORED_HEADERS: Final = HOP_BY_HOP_HEADERS | {
    b"set-cookie",
    b"ratelimit",
    b"ratelimit-policy",
}
# the quota a response reports is the quota when it was sent: a replay would report a stale one
NEVER_STORED_PREFIX: Final = b"x-ratelimit-"
_MIB: Final = 1024 * 1024


def stored_header(name: bytes) -> bool:
    """Whether a response header goes into the record (and so into every replay)."""
    name = name.lower()
    return name not in NEVER_STORED_HEADERS and not name.startswith(NEVER_STORED_PREFIX)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdempotencyOptions:
    """What :class:`IdempotencyMiddleware` does, validated once (``ConfigurationError``).

    The middleware takes these as keywords or as the object; ``docs/idempotency.md`` has the
    table. The last fields are resolved from the options when the object is built, and are
    what the middleware runs on: the store (a URL becomes a client here), the method and path
    sets, the secret as bytes, the statuses never stored, the lease renewal interval and
    whether a client's leaving aborts the request.

    >>> options = IdempotencyOptions(store="memory://", ttl=3600, lease_ttl=9)
    >>> options.heartbeat
    3.0
    """

    store: Store | str | None = None
    methods: Iterable[str] = ("POST", "PATCH")
    paths: Iterable[str] | None = None
    require_key: bool = False
    principal_resolver: PrincipalResolver | None = None
    anonymous: str = "pass"
    secret: str | bytes | None = field(default=None, repr=False)
    ttl: float = 86400.0
    lease_ttl: float = 30.0
    on_disconnect: str = "complete"
    follow_streams: bool = False
    poll_interval: float = 0.05
    no_store_statuses: Collection[int] | None = None
    on_store_error: str = "closed"
    retry_after: int = 1
    max_record_bytes: int = 8 * _MIB
    max_request_bytes: int = 8 * _MIB
    problem_type_base: str = DEFAULT_TYPE_BASE

    record_store: Store = field(init=False, repr=False, compare=False)
    method_set: frozenset[str] = field(init=False, repr=False, compare=False)
    path_set: PathSet | None = field(init=False, repr=False, compare=False)
    secret_bytes: bytes | None = field(init=False, repr=False, compare=False)
    unstored_statuses: frozenset[int] = field(init=False, repr=False, compare=False)
    heartbeat: float = field(init=False, repr=False, compare=False)
    abort: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = self._set
        set_("method_set", _methods(self.methods))
        set_("path_set", _paths(self.paths))
        check_bool("require_key", self.require_key)
        if self.principal_resolver is not None and not callable(self.principal_resolver):
            raise ConfigurationError("principal_resolver must be a callable (scope) -> str | None")
        check_choice("anonymous", self.anonymous, ("pass", "shared"))
        set_("secret_bytes", _secret(self.secret))
        set_("ttl", float(check_seconds("ttl", self.ttl)))
        # renewed at a third of the lease: below a second the renewals would crowd the store
        set_("lease_ttl", float(check_number("lease_ttl", self.lease_ttl, minimum=1)))
        set_("heartbeat", self.lease_ttl / 3)
        check_choice("on_disconnect", self.on_disconnect, ("complete", "abort"))
        set_("abort", self.on_disconnect == "abort")
        check_bool("follow_streams", self.follow_streams)
        set_("poll_interval", float(check_seconds("poll_interval", self.poll_interval)))
        statuses = self.no_store_statuses
        if statuses is None:
            statuses = DEFAULT_NO_STORE_STATUSES
        elif isinstance(statuses, str | bytes):
            raise ConfigurationError("no_store_statuses must be a collection of status codes")
        for status in statuses:
            check_int("no_store_statuses", status, minimum=100, maximum=599)
        set_("unstored_statuses", frozenset(statuses))
        check_choice("on_store_error", self.on_store_error, ("open", "closed"))
        check_int("retry_after", self.retry_after, minimum=0)
        check_int("max_record_bytes", self.max_record_bytes, minimum=1)
        check_int("max_request_bytes", self.max_request_bytes, minimum=1)
        check_text("problem_type_base", self.problem_type_base)
        if "#" in self.problem_type_base:
            raise ConfigurationError("problem_type_base must be a URI without a fragment")
        # last: a client built from a URL is not left behind by a bad option after it
        set_("record_store", _resolve_store(self.store))

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)


def _resolve_store(store: Store | str | None) -> Store:
    if store is None:
        return MemoryStore()
    if isinstance(store, str):
        return store_from_url(store)
    if isinstance(store, Store):
        return store
    raise ConfigurationError(f"store must be a Store or a store URL, got {type(store)!r}")


def _methods(methods: Iterable[str]) -> frozenset[str]:
    if isinstance(methods, str):
        raise ConfigurationError("methods must be a collection of method names, not one string")
    found = frozenset(check_text("methods", m).upper() for m in methods)
    if not found:
        raise ConfigurationError("methods must name at least one HTTP method")
    return found


def _paths(paths: Iterable[str] | None) -> PathSet | None:
    if paths is None:
        return None
    covered = PathSet(paths, option="paths")
    if not covered:
        raise ConfigurationError("paths must be non-empty: leave it out to cover every path")
    return covered


def _secret(secret: str | bytes | None) -> bytes | None:
    if secret is None:
        return None
    if not isinstance(secret, str | bytes):
        raise ConfigurationError("secret must be a str or bytes of at least 16 bytes")
    value = secret.encode("utf-8") if isinstance(secret, str) else secret
    if len(value) < 16:
        raise ConfigurationError("secret must be at least 16 bytes")
    return value
