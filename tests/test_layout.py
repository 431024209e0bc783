"""The shape of the code: small modules; subpackages that meet only through public names."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "aimiddleware"
MAX_LINES = 300


def _modules(*folders: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def test_no_module_is_over_300_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in _modules(SOURCE, ROOT / "reference_app")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_no_subpackage_imports_another_ones_private_module() -> None:
    # "from ..normalize._mapping import x" inside guard/ reaches into normalize's privates
    reach = re.compile(r"^\s*from \.\.(\w+)\.(_\w+) import", re.M)
    found = {}
    for path in _modules(SOURCE):
        own = path.relative_to(SOURCE).parts[0]
        names = [f"{pkg}.{mod}" for pkg, mod in reach.findall(path.read_text()) if pkg != own]
        if names:
            found[str(path.relative_to(SOURCE))] = names
    assert not found, found


def test_benchmarks_do_not_import_tests() -> None:
    # what both need lives in the support package; the benchmarks' own tests import benchmarks
    found = [
        str(path.relative_to(ROOT))
        for path in _modules(ROOT / "benchmarks")
        if re.search(r"^\s*(from|import) tests\b", path.read_text(), re.M)
    ]
    assert not found, found
