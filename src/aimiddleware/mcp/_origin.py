"""Origin validation for MCP endpoints: the transport spec's defence against DNS rebinding.

The MCP Streamable HTTP transport says servers MUST validate the ``Origin`` header of every
incoming connection and answer 403 when it is present and invalid: otherwise a web page in the
user's browser can rebind its host name to a local server and drive its tools.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from .._asgi import get_headers
from .._config import build_options, check_bool
from .._lru import LRUCache
from .._paths import PathSet
from .._signatures import options_signature, show_options
from .._urls import normalize_url
from ..context import ASGIApp, Receive, Scope, Send, annotate, route_path
from ..exceptions import ConfigurationError
from ._jsonrpc import FORBIDDEN_ORIGIN, error_payload, send_error

__all__ = ["MCPOriginMiddleware", "MCPOriginOptions", "OriginPattern"]

logger = logging.getLogger("aimiddleware.mcp")

_MAX_VERDICTS: Final = 1024


class OriginPattern:
    """An allowed origin: exact (``https://app.example.com``) or any port
    (``http://localhost:*``, for local tools that pick a free port)."""

    __slots__ = ("any_port", "origin")

    def __init__(self, pattern: str) -> None:
        self.any_port = pattern.endswith(":*")
        candidate = pattern[:-2] if self.any_port else pattern
        origin = normalize_url(candidate, origin=True)
        if origin is None:
            raise ConfigurationError(
                f"allowed origin {pattern!r} is not scheme://host[:port] (or scheme://host:*)"
            )
        if self.any_port and urlsplit(candidate).port is not None:
            raise ConfigurationError(f"allowed origin {pattern!r} has a port and a ':*' wildcard")
        self.origin = origin

    def matches(self, origin: str) -> bool:
        """Whether a normalised origin is allowed by this pattern."""
        if not self.any_port:
            return origin == self.origin
        if origin == self.origin:
            return True
        head, sep, port = origin.rpartition(":")
        return bool(sep) and port.isdigit() and head == self.origin

    def __repr__(self) -> str:
        return f"{self.origin}:*" if self.any_port else self.origin


def _path_prefixes(paths: Iterable[str] | None) -> PathSet | None:
    if paths is None:
        return None
    if isinstance(paths, str):
        raise ConfigurationError("paths must be a list of path prefixes, not one string")
    items = list(paths)
    covered = PathSet.below(items, option="paths")
    if not covered:
        raise ConfigurationError("paths is empty: leave it out to check every request")
    # "/" is every request, the root of a mount (route path "") included
    return None if "/" in (p.rstrip("/") or "/" for p in items) else covered


@dataclass(frozen=True, slots=True)
class MCPOriginOptions:
    """Every option of :class:`~aimiddleware.mcp.MCPOriginMiddleware` (see docs/mcp.md).

    :param allowed_origins: ``scheme://host[:port]`` values; ``scheme://host:*`` allows any
        port of that host. Compared after normalisation (case, default ports).
    :param allow_missing: whether a request without ``Origin`` passes (default ``True``).
    :param paths: check only these path prefixes and what lies below them (``["/mcp"]``),
        matched against the route path (without ``root_path``); default: every HTTP request.

    >>> MCPOriginOptions(allowed_origins=["HTTPS://Chat.Example.com:443"]).allowed_origins
    ('https://chat.example.com',)
    """

    allowed_origins: Iterable[str] = ()
    allow_missing: bool = True
    paths: Iterable[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.allowed_origins, str):
            raise ConfigurationError("allowed_origins must be a list of origins, not one string")
        patterns = []
        for pattern in self.allowed_origins:
            if pattern.strip() == "*":
                raise ConfigurationError(
                    "allowed_origins cannot be '*': that is no validation at all; "
                    "leave MCPOriginMiddleware out instead"
                )
            patterns.append(repr(OriginPattern(pattern)))
        object.__setattr__(self, "allowed_origins", tuple(patterns))
        check_bool("allow_missing", self.allow_missing)
        _path_prefixes(self.paths)  # validated now; the middleware compiles them again
        if self.paths is not None:
            object.__setattr__(self, "paths", tuple(self.paths))


class MCPOriginMiddleware:
    """Refuse requests whose ``Origin`` header names an origin not on the allow-list (403).

    A request without ``Origin`` passes by default: agents, CLIs and server-side clients do not
    send one, browsers always do on the cross-origin and non-GET requests a rebinding page
    makes. The refusal is the MCP transport's: 403 with a JSON-RPC error body without an id.

    The options are keywords or one :class:`MCPOriginOptions` as ``config``.

    Example::

        app = MCPOriginMiddleware(mcp_app, allowed_origins=["https://chat.example.com",
                                                             "http://localhost:*"])
    """

    def __init__(
        self, app: ASGIApp, config: MCPOriginOptions | None = None, **options: Any
    ) -> None:
        self.app = app
        self.config = config = build_options(
            "MCPOriginMiddleware", MCPOriginOptions, config, options
        )
        patterns = [OriginPattern(p) for p in config.allowed_origins]
        self.allow_missing = config.allow_missing
        self._exact = frozenset(p.origin for p in patterns if not p.any_port)
        self._wildcards = tuple(p for p in patterns if p.any_port)
        self._patterns = tuple(patterns)
        self._paths = _path_prefixes(config.paths)
        # verdicts by raw header value: browsers send a handful of distinct origins, and parsing
        # one costs more than the rest of the check; bounded, since the values are client-chosen
        self._verdicts: LRUCache[bytes, bool] = LRUCache("mcp origin verdicts", _MAX_VERDICTS)

    def __repr__(self) -> str:
        return (
            f"MCPOriginMiddleware(allowed_origins={list(map(repr, self._patterns))!r}, "
            f"allow_missing={self.allow_missing!r}, paths={self._paths!r})"
        )

    def _applies(self, path: str) -> bool:
        return self._paths is None or self._paths.matches(path)

    def allowed(self, values: list[bytes]) -> bool:
        """Whether a request with these ``Origin`` header values may pass."""
        if not values:
            return self.allow_missing
        if len(values) > 1:
            return False  # RFC 6454 allows one; two are a smuggling attempt or a broken proxy
        raw = values[0]
        verdict = self._verdicts.get(raw, 0.0)
        if verdict is None:
            origin = normalize_url(raw.decode("latin-1").strip(), origin=True)
            verdict = origin is not None and (
                origin in self._exact or any(p.matches(origin) for p in self._wildcards)
            )
            self._verdicts.put(raw, verdict, 0.0)
        return verdict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._applies(route_path(scope)):
            await self.app(scope, receive, send)
            return
        values = get_headers(scope.get("headers", ()), b"origin")
        if self.allowed(values):
            await self.app(scope, receive, send)
            return
        annotate(scope, "aimiddleware.mcp.outcome", "forbidden_origin")
        # the value is attacker-chosen: logged repr'd and cut short, never as a raw string
        shown = values[0][:100] if values else b""
        logger.info("mcp: refused a request from origin %r (not allowed)", shown)
        await send_error(
            send,
            403,
            error_payload(
                FORBIDDEN_ORIGIN,
                "Forbidden: the Origin header names an origin this server does not accept",
                data={"error": "forbidden_origin"},
            ),
        )


show_options(MCPOriginMiddleware.__init__, options_signature(MCPOriginOptions))
