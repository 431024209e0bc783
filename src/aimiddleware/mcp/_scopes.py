"""Scopes as MCPScopeMiddleware reads them: validated options, hierarchies, and the challenge."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from ..exceptions import ConfigurationError

__all__ = ["challenge", "implications", "scope_list"]

# RFC 6749 section 3.3 scope-token: printable ASCII without space, '"' and '\'
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# what may appear inside a quoted challenge parameter (RFC 6750 section 3)
_UNQUOTABLE: Final = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def scope_list(value: Iterable[str], what: str) -> tuple[str, ...]:
    """``value`` as a tuple of distinct RFC 6749 scope tokens, or ``ConfigurationError``."""
    if isinstance(value, str):
        raise ConfigurationError(f"{what}: give a list of scopes, not one string ({value!r})")
    scopes = tuple(dict.fromkeys(value))
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE_TOKEN.fullmatch(scope):
            raise ConfigurationError(f"{what}: {scope!r} is not an RFC 6749 scope token")
        if scope == "offline_access":
            # MCP authorization (2026-07-28): refresh tokens are no resource requirement, and a
            # challenge naming offline_access would make every client ask for one
            raise ConfigurationError(f"{what}: offline_access is not a scope a resource needs")
    return scopes


def implications(implied: Mapping[str, Iterable[str]] | None) -> dict[str, frozenset[str]]:
    """For each broader scope, every narrower scope it implies, directly or through others.

    >>> sorted(implications({"admin": ["files"], "files": ["files:read"]})["admin"])
    ['files', 'files:read']
    """
    if implied is None:
        return {}
    if not isinstance(implied, Mapping):
        raise ConfigurationError("implied_scopes must map a scope to the scopes it implies")
    direct = {
        scope_list([broad], "implied_scopes")[0]: frozenset(
            scope_list(narrow, f"implied_scopes[{broad!r}]")
        )
        for broad, narrow in implied.items()
    }
    closed: dict[str, frozenset[str]] = {}
    for broad in direct:
        seen: set[str] = set()
        pending = list(direct[broad])
        while pending:
            scope = pending.pop()
            if scope not in seen:
                seen.add(scope)
                pending.extend(direct.get(scope, ()))
        closed[broad] = frozenset(seen)
    return closed


def _quote(value: str) -> str:
    return '"' + _UNQUOTABLE.sub("?", value) + '"'


def challenge(
    *,
    realm: str | None,
    error: str | None,
    description: str,
    scopes: Iterable[str],
    metadata: str | None,
) -> bytes:
    """A ``Bearer`` challenge (RFC 6750 section 3) with RFC 9728's ``resource_metadata``."""
    params = []
    if realm is not None:
        params.append(f"realm={_quote(realm)}")
    if error is not None:
        params.append(f"error={_quote(error)}")
        params.append(f"error_description={_quote(description)}")
    needed = " ".join(scopes)
    if needed:
        params.append(f"scope={_quote(needed)}")
    if metadata is not None:
        params.append(f"resource_metadata={_quote(metadata)}")
    return ("Bearer " + ", ".join(params)).encode("latin-1") if params else b"Bearer"
