"""Route rules: which requests need which scopes, compiled once at start-up."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from .._challenges import scope_tokens
from .._lru import Memo
from .._paths import PathPattern
from ..exceptions import ConfigurationError

__all__ = ["CompiledRules", "ScopeRule"]

Auth = Literal["required", "optional", "public"]
_AUTH_MODES: Final = ("required", "optional", "public")


@dataclass(frozen=True)
class ScopeRule:
    """Requests whose path matches ``pattern`` (and method is in ``methods``) need every scope.

    Patterns are paths: ``{name}`` matches one path segment, a trailing ``*`` matches anything
    (``/v1/models*`` matches ``/v1/models`` and ``/v1/models/gpt``), matched against the route
    path (without ``root_path``). ``methods=None`` matches
    every method; ``GET`` also matches ``HEAD``. ``auth`` is ``"required"`` (credentials and
    scopes needed), ``"optional"`` (validated when present, anonymous allowed) or ``"public"``
    (never looked at). The first matching rule wins.

    >>> ScopeRule("/v1/chat/completions", ["chat"], methods=["POST"]).scopes
    ('chat',)
    """

    pattern: str
    scopes: Sequence[str] | str = ()
    methods: Sequence[str] | None = None
    auth: Auth = "required"
    _compiled: tuple[PathPattern, frozenset[str] | None, tuple[str, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        scopes = scope_tokens(f"the rule for {self.pattern}", self.scopes)
        object.__setattr__(self, "scopes", scopes)
        if self.auth not in _AUTH_MODES:
            raise ConfigurationError(f"auth must be one of {_AUTH_MODES}, got {self.auth!r}")
        if self.auth != "required" and scopes:
            raise ConfigurationError(f"the {self.auth} rule for {self.pattern} cannot need scopes")
        methods: frozenset[str] | None = None
        if self.methods is not None:
            if isinstance(self.methods, str):
                raise ConfigurationError("methods must be a list of method names, not a string")
            methods = frozenset(m.upper() for m in self.methods)
            if "GET" in methods:
                methods |= {"HEAD"}
        compiled = PathPattern(self.pattern, option="rule pattern")
        object.__setattr__(self, "_compiled", (compiled, methods, scopes))

    @property
    def required(self) -> tuple[str, ...]:
        """The scopes this rule needs, normalised (split on spaces, deduplicated)."""
        return self._compiled[2]

    def matches(self, path: str, method: str) -> bool:
        """Whether this rule applies to a request."""
        pattern, methods, _ = self._compiled
        return (methods is None or method in methods) and pattern.matches(path)


class CompiledRules:
    """The rules in order, plus the default for paths no rule matches."""

    __slots__ = ("_matches", "_rules", "default", "scopes_supported")

    def __init__(self, rules: Iterable[ScopeRule], default: ScopeRule) -> None:
        self._rules = tuple(rules)
        for rule in self._rules:
            if not isinstance(rule, ScopeRule):
                raise ConfigurationError(f"rules must be ScopeRule objects, got {rule!r}")
        self.default = default
        seen: dict[str, None] = {}
        for rule in (*self._rules, default):
            seen.update(dict.fromkeys(rule.required))
        self.scopes_supported = tuple(seen)
        # the hot paths of an API are few, and come first; bounded, since paths are the
        # client's to choose (past the bound, a match is computed each time)
        self._matches: Memo[tuple[str, str], ScopeRule] = Memo(self._find, 1024)

    def match(self, path: str, method: str) -> ScopeRule:
        """The first rule that applies, else the default."""
        return self._matches((path, method))

    def _find(self, key: tuple[str, str]) -> ScopeRule:
        path, method = key
        for rule in self._rules:
            if rule.matches(path, method):
                return rule
        return self.default
