"""RFC 9728 protected resource metadata, built from the same options as the challenges."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["WELL_KNOWN", "metadata_document", "metadata_paths", "metadata_url"]

WELL_KNOWN: Final = "/.well-known/oauth-protected-resource"


def metadata_url(resource: str) -> str:
    """RFC 9728 section 3.1: the well-known segment goes between the host and the path."""
    parts = urlsplit(resource)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + path, parts.query, ""))


def metadata_paths(resource: str) -> frozenset[str]:
    """The paths the metadata is served at: the path-suffixed form, and the bare form."""
    path = urlsplit(resource).path.rstrip("/")
    return frozenset({WELL_KNOWN, WELL_KNOWN + path})


def metadata_document(
    *,
    resource: str,
    authorization_servers: Sequence[str],
    scopes_supported: Sequence[str],
    dpop_algorithms: Sequence[str],
    dpop_required: bool,
    resource_name: str | None,
    resource_documentation: str | None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "resource": resource,
        "bearer_methods_supported": ["header"],
    }
    if authorization_servers:
        document["authorization_servers"] = list(authorization_servers)
    if scopes_supported:
        document["scopes_supported"] = list(scopes_supported)
    if dpop_algorithms:
        document["dpop_signing_alg_values_supported"] = list(dpop_algorithms)
        document["dpop_bound_access_tokens_required"] = dpop_required
    if resource_name:
        document["resource_name"] = resource_name
    if resource_documentation:
        document["resource_documentation"] = resource_documentation
    return document
