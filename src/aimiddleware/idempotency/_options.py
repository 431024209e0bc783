"""The middleware's options, validated once at start-up."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Final, Literal

from .._asgi import HOP_BY_HOP_HEADERS, Scope
from .._paths import PathSet
from ..exceptions import ConfigurationError
from ..stores import MemoryStore, Store, store_from_url

__all__ = [
    "DEFAULT_NO_STORE_STATUSES",
    "DEFAULT_TYPE_BASE",
    "NEVER_STORED_HEADERS",
    "NEVER_STORED_PREFIX",
    "Options",
    "PrincipalResolver",
    "build_options",
    "stored_header",
]

PrincipalResolver = Callable[[Scope], "str | None"]
OnDisconnect = Literal["complete", "abort"]
OnStoreError = Literal["open", "closed"]
Anonymous = Literal["pass", "shared"]

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


def stored_header(name: bytes) -> bool:
    """Whether a response header goes into the record (and so into every replay)."""
    name = name.lower()
    return name not in NEVER_STORED_HEADERS and not name.startswith(NEVER_STORED_PREFIX)


@dataclass(frozen=True, slots=True)
class Options:
    store: Store
    methods: frozenset[str]
    paths: PathSet | None
    require_key: bool
    principal_resolver: PrincipalResolver | None
    anonymous: Anonymous
    secret: bytes | None
    ttl: float
    lease_ttl: float
    heartbeat: float
    on_disconnect: OnDisconnect
    follow_streams: bool
    poll_interval: float
    no_store_statuses: frozenset[int]
    on_store_error: OnStoreError
    retry_after: int
    max_body_bytes: int
    max_request_bytes: int
    problem_type_base: str


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigurationError(f"{name} must be one of {allowed}, got {value!r}")


def build_options(
    *,
    store: Store | str | None,
    methods: Iterable[str],
    paths: Iterable[str] | None,
    require_key: bool,
    principal_resolver: PrincipalResolver | None,
    anonymous: str,
    secret: str | bytes | None,
    ttl: float,
    lease_ttl: float,
    on_disconnect: str,
    follow_streams: bool,
    poll_interval: float,
    no_store_statuses: Collection[int] | None,
    on_store_error: str,
    retry_after: int,
    max_body_bytes: int,
    max_request_bytes: int,
    problem_type_base: str,
) -> Options:
    if store is None:
        resolved: Store = MemoryStore()
    elif isinstance(store, str):
        resolved = store_from_url(store)
    elif isinstance(store, Store):
        resolved = store
    else:
        raise ConfigurationError(f"store must be a Store or a store URL, got {type(store)!r}")
    if isinstance(methods, str):
        raise ConfigurationError("methods must be a collection of method names, not one string")
    method_set = frozenset(m.upper() for m in methods)
    if not method_set:
        raise ConfigurationError("methods must name at least one HTTP method")
    covered: PathSet | None = None
    if paths is not None:
        covered = PathSet(paths, option="paths")
        if not covered:
            raise ConfigurationError("paths must be non-empty: leave it out to cover every path")
    if principal_resolver is not None and not callable(principal_resolver):
        raise ConfigurationError("principal_resolver must be a callable (scope) -> str | None")
    _choice("anonymous", anonymous, ("pass", "shared"))
    _choice("on_disconnect", on_disconnect, ("complete", "abort"))
    _choice("on_store_error", on_store_error, ("open", "closed"))
    secret_bytes = secret.encode("utf-8") if isinstance(secret, str) else secret
    if secret_bytes is not None and len(secret_bytes) < 16:
        raise ConfigurationError("secret must be at least 16 bytes")
    ttl = _positive("ttl", ttl)
    lease_ttl = _positive("lease_ttl", lease_ttl)
    if lease_ttl < 1:
        raise ConfigurationError("lease_ttl must be at least 1 second (it is renewed at 1/3)")
    statuses = DEFAULT_NO_STORE_STATUSES if no_store_statuses is None else no_store_statuses
    if any(isinstance(s, bool) or not isinstance(s, int) or not 100 <= s <= 599 for s in statuses):
        raise ConfigurationError("no_store_statuses must hold HTTP status codes (100-599)")
    if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
        raise ConfigurationError("retry_after must be a non-negative whole number of seconds")
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
        raise ConfigurationError("max_body_bytes must be an int")
    _positive("max_body_bytes", max_body_bytes)
    if isinstance(max_request_bytes, bool) or not isinstance(max_request_bytes, int):
        raise ConfigurationError("max_request_bytes must be an int")
    _positive("max_request_bytes", max_request_bytes)
    if not problem_type_base or "#" in problem_type_base:
        raise ConfigurationError("problem_type_base must be a URI without a fragment")
    return Options(
        store=resolved,
        methods=method_set,
        paths=covered,
        require_key=bool(require_key),
        principal_resolver=principal_resolver,
        anonymous=anonymous,  # type: ignore[arg-type]
        secret=secret_bytes,
        ttl=ttl,
        lease_ttl=lease_ttl,
        heartbeat=lease_ttl / 3,
        on_disconnect=on_disconnect,  # type: ignore[arg-type]
        follow_streams=bool(follow_streams),
        poll_interval=_positive("poll_interval", poll_interval),
        no_store_statuses=frozenset(statuses),
        on_store_error=on_store_error,  # type: ignore[arg-type]
        retry_after=retry_after,
        max_body_bytes=max_body_bytes,
        max_request_bytes=max_request_bytes,
        problem_type_base=problem_type_base,
    )
