"""Every Python block in the README and docs/ runs, so a recipe cannot rot.

Each block is a self-contained program, run in a fresh interpreter. The documented addresses are
pointed at real servers the session starts, only for the blocks that use them: the demo server
(http://127.0.0.1:8000, the reference app with the real model), Redis (127.0.0.1:6379), a Redis
Cluster (127.0.0.1:7000-7002) and an OTLP/HTTP collector (127.0.0.1:4318).

``AIMW_DOCS_PYTHON=/path/to/venv/bin/python`` runs the blocks with that interpreter and the
library it has installed (``pip install 'aimiddleware[all]'`` as the README says), instead of
this checkout's ``src/``: what a reader who copies a recipe into their own virtualenv gets.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..servers import ThreadedServer

ROOT = Path(__file__).resolve().parents[2]
DEMO_URL = "http://127.0.0.1:8000"
REDIS_URL = "redis://127.0.0.1:6379/0"
# the interpreter the blocks run with; another virtualenv's runs them on the installed package
DOCS_PYTHON = os.environ.get("AIMW_DOCS_PYTHON") or sys.executable
LIBRARY_PATH = [] if "AIMW_DOCS_PYTHON" in os.environ else [str(ROOT / "src")]
CLUSTER_URL = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"
OTLP_URL = "http://127.0.0.1:4318"
# a page that still uses an option's old name fails: readers copy what the docs show
STRICT = (
    "import warnings\n"
    'warnings.filterwarnings("error", message=r".*\\) is deprecated; use ", '
    "category=DeprecationWarning)\n"
)
FENCE = re.compile(r"^```(?:python|py)\s*$\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def python_blocks() -> Iterator[tuple[str, str]]:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            yield f"{page.relative_to(ROOT)}:{line}", match.group(1)


BLOCKS = list(python_blocks())


def test_the_docs_have_python_examples() -> None:
    assert len(BLOCKS) >= 2
    assert any(where.startswith("README.md") for where, _ in BLOCKS)


@pytest.mark.e2e
@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_example_runs(
    where: str,
    code: str,
    docs_server: ThreadedServer,
    docs_api_key: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    program = STRICT + code.replace(DEMO_URL, docs_server.url)
    if REDIS_URL in program:
        program = program.replace(REDIS_URL, request.getfixturevalue("redis_server").url)
    if CLUSTER_URL in program:
        program = program.replace(CLUSTER_URL, request.getfixturevalue("redis_cluster").url)
    collector = None
    if OTLP_URL in program:
        collector = request.getfixturevalue("otlp_collector")
        before = len(collector.received)
        program = program.replace(OTLP_URL, collector.url)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *LIBRARY_PATH]),
        "OPENAI_API_KEY": docs_api_key,  # as the README has the reader export it
    }
    result = subprocess.run(
        [DOCS_PYTHON, "-c", program],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"{where} failed:\n{result.stderr[-3000:]}"
    if collector is not None:
        assert len(collector.received) > before, f"{where} exported nothing to the collector"
