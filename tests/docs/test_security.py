"""docs/security.md names, for every attack it lists, tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "security.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    return {node.name for node in ast.walk(tree) if isinstance(node, functions)}


def rows() -> list[list[str]]:
    table = [line for line in PAGE.read_text().splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in table[1:]]


def test_every_named_test_exists() -> None:
    references = REFERENCE.findall(PAGE.read_text())
    assert len(references) >= 40
    missing = []
    for file, name in references:
        path = ROOT / file
        if not path.is_file() or name not in defined_tests(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"


def test_every_row_names_at_least_one_test() -> None:
    for row in rows():
        if row[0] in {"#", "---"} or set(row[0]) <= {"-"}:
            continue
        assert REFERENCE.search(row[-1]), f"row {row[0]} names no test: {row}"
