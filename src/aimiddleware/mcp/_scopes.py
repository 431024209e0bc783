"""Scopes as MCPScopeMiddleware reads them: validated options, hierarchies, and the challenge."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .._challenges import AuthError, Challenger, scope_tokens
from ..exceptions import ConfigurationError

__all__ = ["challenge", "implications", "scope_list"]


def scope_list(value: Iterable[str], what: str) -> tuple[str, ...]:
    """``value`` as a tuple of distinct RFC 6749 scope tokens, or ``ConfigurationError``."""
    scopes = scope_tokens(what, value, split=False)
    for scope in scopes:
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


def challenge(
    *,
    realm: str | None,
    error: str | None,
    description: str,
    scopes: Iterable[str],
    metadata: str | None,
) -> list[bytes]:
    """The ``Bearer`` challenge (RFC 6750 section 3) with RFC 9728's ``resource_metadata``,
    written as ``OAuthMiddleware`` writes its own."""
    status = 401 if error is None else 403
    refusal = AuthError(status, error, description, scopes=scopes)
    return Challenger(resource_metadata=metadata, realm=realm).challenges(refusal)
