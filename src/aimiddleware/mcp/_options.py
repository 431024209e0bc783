"""MCPScopeMiddleware's options: one frozen object, validated once when built."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._config import check_bool, check_int
from ..exceptions import ConfigurationError
from ._scopes import implications, scope_list

__all__ = ["MCPScopeOptions"]


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _scope_map(name: str, value: Mapping[str, Iterable[str]] | None) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{name} must map a name to the scopes it needs")
    return {str(key): scope_list(needed, f"{name}[{key!r}]") for key, needed in value.items()}


@dataclass(frozen=True, slots=True)
class MCPScopeOptions:
    """Every option of :class:`~aimiddleware.mcp.MCPScopeMiddleware` (see docs/mcp.md).

    :param scopes: scopes every request to the endpoint needs (default ``["mcp"]``).
    :param tools: tool name -> scopes that calling it needs, on top of ``scopes``.
    :param allow_unmapped_tools: let a tool missing from ``tools`` be called with ``scopes``
        and ``default_tool_scopes`` (default ``False``: it is refused, so a tool added to the
        server later stays closed until a rule names it).
    :param default_tool_scopes: scopes an unmapped tool needs when ``allow_unmapped_tools``.
    :param methods: JSON-RPC method -> scopes (``{"resources/read": ["files:read"]}``).
    :param implied_scopes: broader scope -> the narrower scopes it implies
        (``{"files": ["files:read", "files:write"]}``): a token granted ``files`` may do what
        ``files:read`` allows. Followed transitively.
    :param resource_metadata: the RFC 9728 metadata URL put into challenges; by default the
        one of the ``OAuthMiddleware`` in front, if any.
    :param realm: an optional ``realm`` for challenges (by default the OAuth middleware's).
    :param max_body: request bodies above this many bytes are refused with 413.

    Scope lists become tuples, ``tools`` and ``methods`` dicts of tuples.

    >>> MCPScopeOptions(tools={"chat": ["chat"]}).tools
    {'chat': ('chat',)}
    """

    scopes: Iterable[str] = ("mcp",)
    tools: Mapping[str, Iterable[str]] | None = None
    allow_unmapped_tools: bool = False
    default_tool_scopes: Iterable[str] = ()
    methods: Mapping[str, Iterable[str]] | None = None
    implied_scopes: Mapping[str, Iterable[str]] | None = None
    resource_metadata: str | None = None
    realm: str | None = None
    max_body: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        _set(self, "scopes", scope_list(self.scopes, "scopes"))
        _set(self, "tools", _scope_map("tools", self.tools))
        check_bool("allow_unmapped_tools", self.allow_unmapped_tools)
        default = scope_list(self.default_tool_scopes, "default_tool_scopes")
        if default and not self.allow_unmapped_tools:
            raise ConfigurationError(
                "default_tool_scopes applies to tools missing from `tools`, which are refused: "
                "set allow_unmapped_tools=True to let them through with these scopes"
            )
        _set(self, "default_tool_scopes", default)
        _set(self, "methods", _scope_map("methods", self.methods))
        implications(self.implied_scopes)  # validated here, followed by the middleware
        metadata = self.resource_metadata
        if metadata is not None and (
            not isinstance(metadata, str) or not metadata.startswith(("https://", "http://"))
        ):
            raise ConfigurationError("resource_metadata must be an absolute http(s) URL")
        if self.realm is not None and not isinstance(self.realm, str):
            raise ConfigurationError(f"realm must be a string or None, got {self.realm!r}")
        check_int("max_body", self.max_body, minimum=1)
