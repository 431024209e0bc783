"""testkit is what the tests and the benchmarks share: it depends on neither of them."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_testkit_imports_neither_tests_nor_benchmarks() -> None:
    reach = re.compile(r"^\s*(from|import) (tests|benchmarks)\b", re.M)
    found = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "testkit").rglob("*.py"))
        if reach.search(path.read_text())
    ]
    assert not found, found


def test_the_benchmarks_load_without_the_tests() -> None:
    code = (
        "import importlib, pkgutil, sys, benchmarks\n"
        "for m in pkgutil.iter_modules(benchmarks.__path__):\n"
        "    importlib.import_module('benchmarks.' + m.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tests'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
