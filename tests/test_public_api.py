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
        "context",
        "errors",
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


def test_the_context_contract_names_every_key_once() -> None:
    context = importlib.import_module("aimiddleware.context")
    keys = {name: getattr(context, name) for name in context.__all__ if name.endswith("_KEY")}
    assert len(set(keys.values())) == len(keys), keys
    for name in context.__all__:
        assert getattr(context, name) is not None
    # every scope key the library writes is one of the contract's
    import pathlib
    import re

    source = pathlib.Path(aimiddleware.__file__).parent
    literal = re.compile(r'scope\[\s*"(aimiddleware\.[a-z_.]+)"\s*\]')
    written = {m for path in source.rglob("*.py") for m in literal.findall(path.read_text())}
    assert written <= set(keys.values()), written - set(keys.values())


def test_nothing_outside_the_package_imports_a_private_module() -> None:
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent
    private = re.compile(r"\baimiddleware(?:\.[a-z]+)*\._[a-z]\w*|`_[a-z]+\.\w+")
    found = {
        str(path.relative_to(root)): private.findall(path.read_text())
        for folder in ("reference_app", "benchmarks", "docs")
        for path in sorted((root / folder).rglob("*"))
        if path.suffix in (".py", ".md")
    }
    assert not {path: names for path, names in found.items() if names}
