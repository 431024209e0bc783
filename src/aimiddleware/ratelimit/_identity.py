"""Who is counted, and under which tier."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from .._asgi import Scope, get_header
from ..exceptions import ConfigurationError

__all__ = ["ProxyTrust", "client_address", "hash_tag"]

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

    The header is read right to left, skipping trusted proxies, so a client cannot choose its
    address by sending a forged header through the proxy.
    """
    peer = peer_address(scope) or "unknown"
    if not trusted or peer not in trusted:
        return peer
    forwarded = get_header(scope.get("headers", ()), b"x-forwarded-for")
    if not forwarded:
        return peer
    hops = [h.strip() for h in forwarded.decode("latin-1").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:64]
    return hops[0][:64] if hops else peer


def header_tier(
    scope: Scope, header: bytes | None, trusted: ProxyTrust, allowed: Mapping[str, str]
) -> str | None:
    """The tier a configured client-type header names, if the sender may choose it.

    ``allowed`` maps lower-case names to tier names: the header's value is case-insensitive.
    """
    if header is None:
        return None
    if trusted and peer_address(scope) not in trusted:
        return None
    value = get_header(scope.get("headers", ()), header)
    if not value:
        return None
    return allowed.get(value.decode("latin-1").strip().lower())


def hash_tag(subject: str) -> str:
    """``subject`` made safe as a Redis Cluster hash tag (no braces) and for key names."""
    return subject.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
