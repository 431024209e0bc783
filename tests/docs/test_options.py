"""Each middleware's page documents every option of its constructor, and nothing else.

The options table of a page (a Markdown table whose first header cell is ``option``) is read and
compared with the constructor's keyword-only parameters (for a middleware that takes ``config``
and ``**options``, the fields of its options class, a group's fields counted as options): a
parameter without a row, or a row without a parameter, fails. Each table reads ``option | type |
default | meaning``; the type is the parameter's annotation as written in the signature, and a
default written as one Python literal (`` `30.0` ``, `` `"open"` ``, `` `None` ``) must equal the
signature's default, so a changed option cannot leave its page behind.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from aimiddleware import (
    IdempotencyMiddleware,
    MCPOriginMiddleware,
    MCPScopeMiddleware,
    NormalizeMiddleware,
    RequestGuardMiddleware,
    SSEMiddleware,
)
from aimiddleware.oauth import OAuthMiddleware
from aimiddleware.ratelimit import RateLimitMiddleware
from aimiddleware.tracing import TracingMiddleware

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES: dict[type, str] = {
    IdempotencyMiddleware: "idempotency.md",
    RateLimitMiddleware: "ratelimit.md",
    OAuthMiddleware: "oauth.md",
    SSEMiddleware: "sse.md",
    NormalizeMiddleware: "normalize.md",
    TracingMiddleware: "tracing.md",
    RequestGuardMiddleware: "guard.md",
    MCPOriginMiddleware: "mcp.md",
    MCPScopeMiddleware: "mcp.md",
}
_NAME = re.compile(r"^`([a-z_][a-z0-9_]*)`")
_LITERAL = re.compile(r"^`([^`]+)`")


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def option_rows(page: str) -> dict[str, list[str]]:
    """Option name -> the row's cells, from every options table of ``page``."""
    rows: dict[str, list[str]] = {}
    in_table = False
    for line in (DOCS / page).read_text().splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        row = cells(line)
        if row[0] == "option":
            assert row == ["option", "type", "default", "meaning"], f"docs/{page}: {line}"
            in_table = True
            continue
        if in_table and not set(row[0]) <= set("-: "):
            match = _NAME.match(row[0])
            if match:
                rows[match.group(1)] = row
    return rows


def fields_as_options(config: type) -> dict[str, inspect.Parameter]:
    """The options class's fields; a group (a field whose default is a dataclass) gives its own."""
    found: dict[str, inspect.Parameter] = {}
    for name, parameter in inspect.signature(config).parameters.items():
        if dataclasses.is_dataclass(parameter.default):
            found.update(fields_as_options(type(parameter.default)))
        else:
            found[name] = parameter
    return found


def keyword_options(cls: type) -> dict[str, inspect.Parameter]:
    signature = inspect.signature(cls.__init__)  # type: ignore[misc]
    kinds = {parameter.kind for parameter in signature.parameters.values()}
    if "config" in signature.parameters and inspect.Parameter.VAR_KEYWORD in kinds:
        hint = typing.get_type_hints(cls.__init__)["config"]  # type: ignore[misc]
        config = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        return fields_as_options(config)
    return {
        name: parameter
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def normalised(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(normalised(item) for item in value)
    if isinstance(value, frozenset | set):
        return frozenset(value)
    return value


@pytest.mark.parametrize("cls", list(PAGES), ids=lambda cls: cls.__name__)
def test_every_option_has_a_row_and_every_row_an_option(cls: type) -> None:
    page = PAGES[cls]
    documented = option_rows(page)
    options = keyword_options(cls)
    missing = sorted(set(options) - set(documented))
    assert not missing, f"docs/{page} has no options row for {missing}"
    if list(PAGES.values()).count(page) == 1:  # a page shared by two middlewares has both tables
        stale = sorted(set(documented) - set(options))
        assert not stale, f"docs/{page} documents options {cls.__name__} does not take: {stale}"


@pytest.mark.parametrize("cls", list(PAGES), ids=lambda cls: cls.__name__)
def test_literal_defaults_match_the_signature(cls: type) -> None:
    documented = option_rows(PAGES[cls])
    wrong = {}
    for name, parameter in keyword_options(cls).items():
        row = documented[name]
        default_cell = row[2]  # option | type | default | meaning
        match = _LITERAL.match(default_cell)
        if match is None or parameter.default is inspect.Parameter.empty:
            continue
        try:
            literal = ast.literal_eval(match.group(1))
        except (ValueError, SyntaxError):
            continue  # a name or an expression in prose, not a literal
        if parameter.default is None and literal in ({}, [], ()):
            continue  # `None` standing for "empty", documented as the empty collection
        if normalised(literal) != normalised(parameter.default):
            wrong[name] = (match.group(1), parameter.default)
    assert not wrong, f"docs/{PAGES[cls]}: documented default vs signature: {wrong}"


@pytest.mark.parametrize("cls", list(PAGES), ids=lambda cls: cls.__name__)
def test_types_are_the_signatures_annotations(cls: type) -> None:
    documented = option_rows(PAGES[cls])
    wrong = {}
    for name, parameter in keyword_options(cls).items():
        written = documented[name][1].strip("`").replace("\\|", "|")
        if written != str(parameter.annotation):
            wrong[name] = (written, str(parameter.annotation))
    assert not wrong, f"docs/{PAGES[cls]}: documented type vs signature: {wrong}"
