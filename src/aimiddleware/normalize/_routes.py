"""Per-route choices of the normalisation middleware, and the request headers that pick them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._paths import PathPattern
from ..exceptions import ConfigurationError

__all__ = ["ErrorFormat", "NormalizeRoute", "pick", "prefers_minimal"]

ErrorFormat = Literal["openai", "problem", "passthrough"]
Minimal = Callable[[Any], Any] | Sequence[str]


@dataclass(frozen=True, slots=True)
class NormalizeRoute:
    """What one route (an exact path, or a prefix ending in ``*``) wants.

    >>> route = NormalizeRoute("/v1/chat/completions", minimal=["id", "choices.message.content"])
    >>> route.matches("/v1/chat/completions")
    True

    :param path: ``"/v1/models"`` matches that path; ``"/mcp*"`` every path starting ``/mcp``;
        ``{name}`` one segment. Matched against the route path (without ``root_path``).
    :param format: ``"openai"`` (the envelope; ``Accept: application/problem+json`` still wins),
        ``"problem"`` (RFC 9457 always) or ``"passthrough"`` (errors left as the app wrote them).
    :param minimal: the representation returned for ``Prefer: return=minimal``: the dotted paths
        of the fields to keep (lists are walked: ``"choices.message.content"``), or a function
        from the parsed JSON body to the trimmed one.
    """

    path: str
    format: ErrorFormat = "openai"
    minimal: Minimal | None = None
    _pattern: PathPattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", PathPattern(self.path, option="route path"))
        if self.format not in ("openai", "problem", "passthrough"):
            raise ConfigurationError(f"unknown error format {self.format!r}")
        minimal = self.minimal
        if (
            minimal is not None
            and not callable(minimal)
            and (
                isinstance(minimal, str | bytes)
                or not all(isinstance(p, str) and p for p in minimal)
            )
        ):
            raise ConfigurationError("minimal must be a function or a list of field paths")

    def matches(self, path: str) -> bool:
        return self._pattern.matches(path)

    def trim(self, payload: Any) -> Any:
        minimal = self.minimal
        if minimal is None:
            return payload
        if callable(minimal):
            return minimal(payload)
        return pick(payload, [p.split(".") for p in minimal])


def pick(value: Any, paths: Sequence[Sequence[str]]) -> Any:
    """Keep only the fields named by ``paths`` (lists are walked element by element).

    >>> pick({"id": 1, "choices": [{"message": {"content": "hi", "role": "x"}}], "usage": {}},
    ...      [["id"], ["choices", "message", "content"]])
    {'id': 1, 'choices': [{'message': {'content': 'hi'}}]}
    """
    if isinstance(value, list):
        return [pick(item, paths) for item in value]
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for path in paths:
        head = path[0]
        if head not in value:
            continue
        if len(path) == 1:
            out[head] = value[head]
            continue
        inner = pick(value[head], [path[1:]])
        current = out.get(head)
        out[head] = _merge(current, inner) if current is not None else inner
    return out


def _merge(left: Any, right: Any) -> Any:
    if isinstance(left, dict) and isinstance(right, dict):
        merged = dict(left)
        for key, value in right.items():
            merged[key] = _merge(merged[key], value) if key in merged else value
        return merged
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [_merge(a, b) for a, b in zip(left, right, strict=True)]
    return right


def prefers_minimal(prefer: list[bytes]) -> bool:
    """Whether the ``Prefer`` headers (RFC 7240) ask for ``return=minimal``."""
    for value in prefer:
        for token in value.split(b","):
            name, _, arg = token.split(b";", 1)[0].partition(b"=")
            if name.strip().lower() == b"return" and arg.strip().strip(b'"').lower() == b"minimal":
                return True
    return False
