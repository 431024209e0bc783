"""One path grammar for the path options of every middleware, matched against route paths.

A pattern is a path starting with ``/``:

* ``/v1/models`` matches that path only;
* ``{name}`` matches one path segment (``/v1/models/{model}`` matches ``/v1/models/gpt``, not
  ``/v1/models/a/b``);
* a trailing ``*`` matches anything, ``/`` included: ``/v1/*`` matches every path below
  ``/v1/``, ``/mcp*`` also ``/mcp`` and ``/mcpx``.

Paths are route paths (:func:`aimiddleware.context.route_path`): the request path without
``root_path``, the path Starlette's router matches, so that a rule written for an app's routes
holds wherever the app is mounted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .context import ROUTE_TEMPLATE_KEY
from .exceptions import ConfigurationError

__all__ = ["PathPattern", "PathSet", "route_template"]

_PARAM: Final = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


class PathPattern:
    """One compiled pattern.

    >>> PathPattern("/v1/models/{model}").matches("/v1/models/gpt")
    True
    >>> PathPattern("/v1/*").matches("/v2/models")
    False
    """

    __slots__ = ("exact", "pattern", "prefix", "regex")

    def __init__(self, pattern: str, *, option: str = "path") -> None:
        if not isinstance(pattern, str) or not pattern.startswith("/"):
            raise ConfigurationError(f"{option}: a path pattern must start with '/': {pattern!r}")
        wildcard = pattern.endswith("*")
        body = pattern[:-1] if wildcard else pattern
        if "*" in body:
            raise ConfigurationError(
                f"{option}: '*' is only allowed at the end of a pattern: {pattern!r}"
            )
        self.pattern = pattern
        #: the path it matches, when it has neither ``{name}`` nor ``*``
        self.exact: str | None = None
        #: what every matching path starts with, when it ends in ``*`` without ``{name}``
        self.prefix: str | None = None
        self.regex: re.Pattern[str] | None = None
        if re.search(r"[{}]", _PARAM.sub("", body)):
            raise ConfigurationError(
                f"{option}: a parameter is a name in braces, '{{model}}': {pattern!r}"
            )
        if _PARAM.search(body) is None:
            if wildcard:
                self.prefix = body
            else:
                self.exact = body
            return
        out: list[str] = []
        last = 0
        for match in _PARAM.finditer(body):
            out.append(re.escape(body[last : match.start()]))
            out.append("[^/]+")
            last = match.end()
        out.append(re.escape(body[last:]))
        if wildcard:
            out.append(".*")
        self.regex = re.compile("".join(out), re.DOTALL)

    def __repr__(self) -> str:
        return f"PathPattern({self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathPattern) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def matches(self, path: str) -> bool:
        """Whether the route path ``path`` matches."""
        if self.exact is not None:
            return path == self.exact
        if self.prefix is not None:
            return path.startswith(self.prefix)
        regex = self.regex
        return regex is not None and regex.fullmatch(path) is not None


class PathSet:
    """Several patterns checked as one: exact paths by a set lookup, prefixes by one
    ``startswith``, only ``{name}`` patterns by a regular expression each.

    >>> paths = PathSet(["/health", "/v1/*"], option="paths")
    >>> paths.matches("/v1/models"), paths.matches("/metrics")
    (True, False)
    """

    __slots__ = ("_exact", "_prefixes", "_regexes", "patterns")

    def __init__(self, patterns: Iterable[str], *, option: str) -> None:
        if isinstance(patterns, str):
            raise ConfigurationError(f"{option} must be a list of paths, not one string")
        self.patterns = tuple(PathPattern(p, option=option) for p in patterns)
        self._exact = frozenset(p.exact for p in self.patterns if p.exact is not None)
        self._prefixes = tuple(p.prefix for p in self.patterns if p.prefix is not None)
        self._regexes = tuple(p.regex for p in self.patterns if p.regex is not None)

    @classmethod
    def below(cls, prefixes: Iterable[str], *, option: str) -> PathSet:
        """Each path and everything below it, segment-wise: ``/mcp`` covers ``/mcp`` and
        ``/mcp/sse``, not ``/mcpx``; a trailing ``/`` is ignored.

        >>> PathSet.below(["/mcp/"], option="paths").matches("/mcp")
        True
        """
        if isinstance(prefixes, str):
            raise ConfigurationError(f"{option} must be a list of path prefixes, not one string")
        patterns: list[str] = []
        for prefix in prefixes:
            if not isinstance(prefix, str) or not prefix.startswith("/"):
                raise ConfigurationError(f"{option}: path prefix {prefix!r} must start with '/'")
            base = prefix.rstrip("/")
            patterns += [base or "/", base + "/*"]
        return cls(patterns, option=option)

    def __repr__(self) -> str:
        return f"PathSet({[p.pattern for p in self.patterns]!r})"

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: str) -> bool:
        """Whether any pattern matches the route path ``path``."""
        if path in self._exact or path.startswith(self._prefixes):
            return True
        return any(regex.fullmatch(path) is not None for regex in self._regexes)


def route_template(scope: Mapping[str, Any], root_path: str) -> str | None:
    """The matched route's template (``/v1/items/{id}``), as the router left it in the scope.

    Starlette and FastAPI put the matched route in ``scope["route"]``; a mount adds its prefix
    to ``root_path``, so the part added since the request arrived (``root_path`` is the one the
    caller saw on the way in) is the mount's. A replay sets :data:`ROUTE_TEMPLATE_KEY`, the
    template relative to the replaying middleware's mount, which takes precedence.

    >>> route_template({"aimiddleware.route_template": "/v1/chat/completions"}, "")
    '/v1/chat/completions'
    """
    # a replay's template is the inner route's: a mount around it has left its own route there
    template = scope.get(ROUTE_TEMPLATE_KEY)
    if template is None:
        route = scope.get("route")
        if route is None:
            return None
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return None
    mounted = scope.get("root_path", "")
    if isinstance(mounted, str) and len(mounted) > len(root_path) and mounted.startswith(root_path):
        template = mounted[len(root_path) :] + template
    return template
