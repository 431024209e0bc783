from __future__ import annotations

import importlib
import subprocess
import sys

import aimiddleware


def test_all_is_curated_and_sorted() -> None:
    assert aimiddleware.__all__ == sorted(aimiddleware.__all__)
    assert len(set(aimiddleware.__all__)) == len(aimiddleware.__all__)


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in aimiddleware.__all__:
        obj = getattr(aimiddleware, name)
        if name != "__version__":
            assert obj.__doc__, f"{name} has no docstring"


def test_nothing_private_is_exported() -> None:
    public = {n for n in dir(aimiddleware) if not n.startswith("_")}
    submodules = {
        "exceptions",
        "principal",
        "stores",
        "annotations",
        "normalize",
        "oauth",
        "ratelimit",
        "sse",
        "tracing",
        "idempotency",
        "mcp",
        "guard",
    }
    assert public - submodules <= set(aimiddleware.__all__)


def test_stores_all_resolves() -> None:
    stores = importlib.import_module("aimiddleware.stores")
    for name in stores.__all__:
        assert getattr(stores, name) is not None


def test_import_needs_no_optional_dependency() -> None:
    # the core import must not pull in redis, opentelemetry, fastapi or llama_cpp
    code = (
        "import sys, aimiddleware, aimiddleware.stores;"
        "bad = [m for m in ('redis', 'opentelemetry', 'fastapi', 'llama_cpp', 'joserfc', 'httpx')"
        " if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
