"""Per-route choices of the normalisation middleware, and the request headers that pick them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._paths import PathPattern
from ..context import Message, Scope, annotate
from ..exceptions import ConfigurationError

__all__ = ["ErrorFormat", "NormalizeRoute", "minimal_response", "pick", "prefers_minimal"]

logger = logging.getLogger("aimiddleware.normalize")

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

    @property
    def format_or_openai(self) -> Literal["openai", "problem"]:
        """The shape the middlewares inside write their errors in on this route (a passthrough
        route leaves the choice to the request's ``Accept``, as an ``"openai"`` one does)."""
        return "problem" if self.format == "problem" else "openai"

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


def minimal_response(
    route: NormalizeRoute | None, start: Message, body: bytes, scope: Scope
) -> tuple[Message, bytes] | None:
    """The ``http.response.start`` and body of the minimal representation of a held JSON
    response, or ``None`` when the full one is sent (an empty body, or trimming failed).
    """
    if not body or route is None:  # HEAD, or an empty 204-like body: nothing to trim
        return None
    try:
        trimmed = json.dumps(
            route.trim(json.loads(body)), separators=(",", ":"), ensure_ascii=False
        )
    except Exception:
        logger.exception(
            "the minimal representation of %s failed; the full one was sent", scope.get("path", "")
        )
        return None
    out = trimmed.encode("utf-8")
    headers = [h for h in start.get("headers", []) if h[0].lower() != b"content-length"]
    headers.append((b"content-length", str(len(out)).encode("ascii")))
    headers.append((b"preference-applied", b"return=minimal"))
    annotate(scope, "aimiddleware.normalize.minimal", True)
    return {**start, "headers": headers}, out
