"""The middleware's options: one frozen, validated object, in groups, checked once at start-up.

``OAuthMiddleware(app, resource=..., issuer=..., ...)`` takes every option as a keyword, as it
always has; the keywords land in their group of :class:`OAuthOptions` (``issuer`` in
``jwt``, ``rules`` in ``access``...), and the object itself can be passed as ``config=``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import Field, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from .._challenges import scope_tokens
from .._config import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_seconds,
    group_options,
)
from ..exceptions import ConfigurationError
from ._apikeys import APIKeys
from ._dpop import DPoP
from ._introspection import Introspection
from ._jwt import ASYMMETRIC_ALGORITHMS
from ._rules import ScopeRule

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AccessOptions",
    "ClaimOptions",
    "JWTOptions",
    "MetadataOptions",
    "OAuthOptions",
    "check_url",
]

DEFAULT_ALGORITHMS: Final = ("RS256", "PS256", "ES256", "Ed25519")


def check_url(name: str, value: Any) -> str:
    """An absolute http(s) URL without fragment."""
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a URL string, got {type(value).__name__}")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
        raise ConfigurationError(f"{name} must be an absolute http(s) URL without fragment")
    return value


def _names(name: str, value: Any, *, empty: bool = True) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence | frozenset | set):
        raise ConfigurationError(f"{name} must be a list of strings, not {value!r}")
    out = tuple(value)
    if not empty and not out:
        raise ConfigurationError(f"{name} cannot be empty")
    if not all(isinstance(item, str) and item for item in out):
        raise ConfigurationError(f"{name} must be a list of non-empty strings")
    return out


def _optional_text(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string or None, got {value!r}")


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True)
class JWTOptions:
    """What a token must say: JWT issuer, keys, audience, algorithms and clock leeway.

    ``issuer=None`` accepts no JWTs (API keys and introspection only); ``audiences``,
    ``verify_audience`` and ``leeway`` apply to introspection answers as well.
    """

    issuer: str | None = None
    jwks_uri: str | None = None
    jwks: Mapping[str, Any] | None = None
    audiences: Sequence[str] | None = None
    verify_audience: bool = True
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    require_typ: bool = True
    leeway: float = 30.0
    jwks_ttl: float = 300.0
    jwks_cooldown: float = 30.0
    unknown_kid_ttl: float = 60.0

    def __post_init__(self) -> None:
        if self.issuer is not None:
            check_url("issuer", self.issuer)
        if self.jwks_uri is not None:
            check_url("jwks_uri", self.jwks_uri)
        if (self.jwks_uri is not None or self.jwks is not None) and self.issuer is None:
            raise ConfigurationError("jwks_uri/jwks need the issuer whose tokens they verify")
        if self.jwks_uri is not None and self.jwks is not None:
            raise ConfigurationError("give either jwks_uri or a static jwks, not both")
        if self.jwks is not None and not isinstance(self.jwks, Mapping):
            raise ConfigurationError('jwks must be a key set mapping ({"keys": [...]})')
        if self.audiences is not None:
            _set(self, "audiences", _names("audiences", self.audiences, empty=False))
        check_bool("verify_audience", self.verify_audience)
        check_bool("require_typ", self.require_typ)
        if isinstance(self.algorithms, str):
            raise ConfigurationError("algorithms must be a list of names, not a string")
        algorithms = tuple(dict.fromkeys(self.algorithms))
        refused = sorted(a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS)
        if not algorithms or refused:
            # HMAC would need a shared secret with the issuer, "none" no key at all: neither is
            # a resource server's business
            raise ConfigurationError(
                f"algorithms must be asymmetric JWS algorithms; refused: {refused or 'empty list'}"
            )
        _set(self, "algorithms", algorithms)
        check_seconds("leeway", self.leeway, zero=True)
        check_seconds("jwks_ttl", self.jwks_ttl)
        check_seconds("jwks_cooldown", self.jwks_cooldown, zero=True)
        check_seconds("unknown_kid_ttl", self.unknown_kid_ttl, zero=True)


@dataclass(frozen=True, slots=True)
class AccessOptions:
    """Which requests need which scopes: rules, public paths, and the default for the rest."""

    rules: Sequence[ScopeRule] = ()
    public_paths: Sequence[str] = ()
    default_scopes: Sequence[str] | str = ()
    allow_anonymous: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.rules, ScopeRule | str):
            raise ConfigurationError("rules must be a list of ScopeRule objects")
        rules = tuple(self.rules)
        for rule in rules:
            if not isinstance(rule, ScopeRule):
                raise ConfigurationError(f"rules must be ScopeRule objects, got {rule!r}")
        _set(self, "rules", rules)
        _set(self, "public_paths", _names("public_paths", self.public_paths))
        _set(self, "default_scopes", scope_tokens("default_scopes", self.default_scopes))
        check_bool("allow_anonymous", self.allow_anonymous)


@dataclass(frozen=True, slots=True)
class ClaimOptions:
    """How a token's claims become the principal: user, scopes and rate-limit tier."""

    scope_claims: Sequence[str] = ("scope", "scp")
    tier_claim: str | None = "tier"
    default_tier: str | None = None
    principal_claims: Sequence[str] = ("sub",)

    def __post_init__(self) -> None:
        _set(self, "scope_claims", _names("scope_claims", self.scope_claims, empty=False))
        principal = _names("principal_claims", self.principal_claims, empty=False)
        if {"client_id", "azp"} & set(principal):
            raise ConfigurationError(
                "principal_claims name the user of a token (such as 'sub'), not its client: a "
                "token without them is its client already; to count rate limits per OAuth "
                "client, use RateLimitMiddleware(key_by='client')"
            )
        _set(self, "principal_claims", principal)
        _optional_text("tier_claim", self.tier_claim)
        _optional_text("default_tier", self.default_tier)


@dataclass(frozen=True, slots=True)
class MetadataOptions:
    """The RFC 9728 protected resource metadata document, and whether it is served."""

    serve_metadata: bool = True
    authorization_servers: Sequence[str] | None = None
    scopes_supported: Sequence[str] = ()
    resource_name: str | None = None
    resource_documentation: str | None = None

    def __post_init__(self) -> None:
        check_bool("serve_metadata", self.serve_metadata)
        if self.authorization_servers is not None:
            servers = _names("authorization_servers", self.authorization_servers)
            for server in servers:
                check_url("authorization_servers", server)
            _set(self, "authorization_servers", servers)
        _set(self, "scopes_supported", scope_tokens("scopes_supported", self.scopes_supported))
        _optional_text("resource_name", self.resource_name)
        _optional_text("resource_documentation", self.resource_documentation)


@dataclass(frozen=True, slots=True)
class OAuthOptions:
    """Every option of :class:`OAuthMiddleware`, validated when built.

    >>> options = OAuthOptions(
    ...     resource="https://api.example.com",
    ...     jwt=JWTOptions(issuer="https://auth.example.com"),
    ...     access=AccessOptions(public_paths=["/health"]),
    ... )
    >>> options.access.public_paths
    ('/health',)
    """

    resource: str
    jwt: JWTOptions = field(default_factory=JWTOptions)
    introspection: Introspection | None = None
    dpop: DPoP | None = None
    api_keys: APIKeys | None = None
    access: AccessOptions = field(default_factory=AccessOptions)
    claims: ClaimOptions = field(default_factory=ClaimOptions)
    metadata: MetadataOptions = field(default_factory=MetadataOptions)
    realm: str | None = None
    http_timeout: float = 5.0
    cache_size: int = 10_000
    cache_ttl: float = 300.0
    unavailable_status: Literal[401, 503] = 503
    retry_after: int = 5
    max_authorization_bytes: int = 8192
    http_client: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        check_url("resource", self.resource)
        for name, kind in GROUPS.items():
            if not isinstance(getattr(self, name), kind):
                raise ConfigurationError(f"{name} must be a {kind.__name__}")
        issuer = self.jwt.issuer
        if issuer is None and self.introspection is None and self.api_keys is None:
            raise ConfigurationError(
                "nothing to authenticate with: set issuer, introspection or api_keys"
            )
        for name, kind in (("introspection", Introspection), ("api_keys", APIKeys),
                           ("dpop", DPoP)):  # fmt: skip
            if getattr(self, name) is not None and not isinstance(getattr(self, name), kind):
                raise ConfigurationError(f"{name} must be an {kind.__name__} object")
        if self.introspection is not None and self.introspection.endpoint is None and not issuer:
            raise ConfigurationError("introspection without endpoint needs the issuer metadata")
        _optional_text("realm", self.realm)
        check_seconds("http_timeout", self.http_timeout)
        check_int("cache_size", self.cache_size, minimum=1)
        check_seconds("cache_ttl", self.cache_ttl, zero=True)
        check_choice("unavailable_status", self.unavailable_status, (401, 503))
        _set(self, "retry_after", int(check_number("retry_after", self.retry_after, minimum=0)))
        check_int("max_authorization_bytes", self.max_authorization_bytes, minimum=256,
                  maximum=65536)  # fmt: skip

    @classmethod
    def from_keywords(cls, **options: Any) -> OAuthOptions:
        """The options from the middleware's flat keywords (``issuer=...``, ``rules=...``):
        each lands in its group. A group and one of its keywords at once is an error.

        >>> OAuthOptions.from_keywords(resource="https://api.example.com",
        ...                            issuer="https://auth.example.com").jwt.issuer
        'https://auth.example.com'
        """
        return cls(**group_options("OAuthMiddleware", options, GROUPS))


GROUPS: Final[dict[str, type]] = {
    "jwt": JWTOptions,
    "access": AccessOptions,
    "claims": ClaimOptions,
    "metadata": MetadataOptions,
}


def flat_fields() -> list[Field[Any]]:
    """The fields behind the middleware's keywords: each group's, in place of the group."""
    out: list[Field[Any]] = []
    for top in fields(OAuthOptions):
        out += fields(GROUPS[top.name]) if top.name in GROUPS else [top]
    return out
