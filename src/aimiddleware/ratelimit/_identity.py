"""Who is counted, and under which tier."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .._asgi import get_header, get_headers
from ..context import Scope, get_principal
from ..exceptions import ConfigurationError
from ._tiers import Tier

if TYPE_CHECKING:
    from ._options import RateLimitOptions

__all__ = ["Callers", "ProxyTrust", "client_address", "hash_tag", "tier_key"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyTrust:
    """The set of peers whose ``X-Forwarded-For`` (or client-type header) is believed."""

    __slots__ = ("_networks",)

    def __init__(self, proxies: Iterable[str], what: str) -> None:
        networks: list[Network] = []
        for proxy in proxies:
            try:
                networks.append(ipaddress.ip_network(proxy, strict=False))
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"{what}: {proxy!r} is not an IP address or CIDR") from exc
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def __repr__(self) -> str:
        return f"ProxyTrust({[str(n) for n in self._networks]})"


def peer_address(scope: Scope) -> str | None:
    client = scope.get("client")
    if client and isinstance(client[0], str):
        return client[0]
    return None


def client_address(scope: Scope, trusted: ProxyTrust) -> str:
    """The caller's address: the peer, or from ``X-Forwarded-For`` when the peer is trusted.

    Every ``X-Forwarded-For`` field line counts, joined in order as one list (RFC 9110
    section 5.3): a proxy may append a line of its own after the one the client sent. The
    list is read right to left, skipping trusted proxies, so a client cannot choose its
    address by sending a forged header through the proxy.

    >>> scope = {"client": ("10.0.0.1", 1), "headers": [
    ...     (b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.9")]}
    >>> client_address(scope, ProxyTrust(["10.0.0.0/8"], "proxies"))
    '203.0.113.9'
    """
    peer = peer_address(scope) or "unknown"
    if not trusted or peer not in trusted:
        return peer
    lines = get_headers(scope.get("headers", ()), b"x-forwarded-for")
    if not lines:
        return peer
    hops = [h.strip() for h in b",".join(lines).decode("latin-1").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:64]
    return hops[0][:64] if hops else peer


def tier_key(name: str) -> str:
    """The one form tier names are compared in: ``HUMAN``, ``Human`` and ``human`` are one tier.

    >>> tier_key(" HUMAN ")
    'human'
    """
    return name.strip().casefold()


def header_tier(
    scope: Scope, header: bytes | None, trusted: ProxyTrust, allowed: Mapping[str, str]
) -> str | None:
    """The tier a configured client-type header names, if the sender may choose it.

    Only peers in ``trusted`` (never empty: the middleware refuses that configuration) may
    name a tier. ``allowed`` maps :func:`tier_key` forms to tier names.
    """
    if header is None or peer_address(scope) not in trusted:
        return None
    value = get_header(scope.get("headers", ()), header)
    if not value:
        return None
    return allowed.get(tier_key(value.decode("latin-1")))


def hash_tag(subject: str) -> str:
    """``subject`` made safe as a Redis Cluster hash tag (no braces) and for key names."""
    return subject.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


class Callers:
    """Who a request is counted as, and under which tier; validated once.

    The principal (``Principal.id``, one per user; with ``key_by="client"`` its OAuth client,
    ``Principal.client_key``) under its tier claim; else the client address, under the tier
    a trusted gateway's client-type header names, else ``default_tier``.
    """

    __slots__ = ("_default", "_header", "_header_from", "_header_tiers", "_per_client",
                 "_proxies", "tiers")  # fmt: skip

    def __init__(self, config: RateLimitOptions) -> None:
        # tier names are compared in one form everywhere: a claim or header saying HUMAN is human
        self.tiers = {tier_key(t.name): t for t in config.all_tiers}
        default = config.default_tier or config.all_tiers[0].name  # validated: one of the tiers
        self._default = self.tiers[tier_key(default)]
        callers = config.callers
        self._per_client = callers.key_by == "client"
        self._proxies = ProxyTrust(callers.trusted_proxies, "trusted_proxies")
        header = callers.client_type_header
        self._header = header.lower().encode("latin-1") if header else None
        self._header_from = ProxyTrust(callers.client_type_trusted_from, "client_type_trusted_from")
        named = callers.client_type_tiers
        allowed = set(self.tiers) if named is None else {tier_key(name) for name in named}
        self._header_tiers = {name: self.tiers[name].name for name in allowed}

    @property
    def default(self) -> Tier:
        return self._default

    def resolve(self, scope: Scope) -> tuple[str, Tier]:
        """The counting key of this request and its tier."""
        principal = get_principal(scope)
        if principal is not None:
            subject = principal.client_key if self._per_client else principal.id
            if principal.tier is None:
                return subject, self._default
            tier = self.tiers.get(principal.tier) or self.tiers.get(tier_key(principal.tier))
            return subject, tier or self._default
        if self._proxies:
            subject = "ip:" + client_address(scope, self._proxies)
        else:  # client_address without proxies to trust: the peer, read inline (per request)
            client = scope.get("client")
            peer = client[0] if client and isinstance(client[0], str) else None
            subject = "ip:" + (peer or "unknown")
        if self._header is not None:
            name = header_tier(scope, self._header, self._header_from, self._header_tiers)
            if name is not None:
                # agents and people behind one address (a gateway) keep separate budgets
                return f"{subject}|{name}", self.tiers[tier_key(name)]
        return subject, self._default
