"""The examples in the library's docstrings run, so they cannot rot."""

from __future__ import annotations

import doctest
import importlib
import pathlib

import pytest

SOURCE = pathlib.Path(__file__).resolve().parent.parent / "src" / "aimiddleware"
MODULES = sorted(
    ".".join(("aimiddleware", *path.relative_to(SOURCE).with_suffix("").parts)).removesuffix(
        ".__init__"
    )
    for path in SOURCE.rglob("*.py")
    if "    >>> " in path.read_text()
    or '"""\n>>> ' in path.read_text()
    or "\n>>> " in path.read_text()
)


def test_the_library_has_examples() -> None:
    assert len(MODULES) >= 20


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    # examples marked +SKIP need a server or an event loop; the rest run
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert failed == 0, f"{failed} of {attempted} examples failed in {name}"
