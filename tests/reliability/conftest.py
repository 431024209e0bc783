"""The reliability suite: reduced numbers inside ``make test``, full ones under ``make soak``.

``make soak`` sets ``AIMW_SOAK=1``; every scenario runs in both forms, only its numbers change.
Each figure a scenario measures is printed on one line and collected into
``test-artifacts/reliability.json`` (git-ignored), which docs/reliability.md quotes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SOAK = os.environ.get("AIMW_SOAK") == "1"
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability.json"


def scale(reduced: Any, full: Any) -> Any:
    """The reduced figure in ``make test``, the full one in ``make soak``."""
    return full if SOAK else reduced


class Reporter:
    """One line per figure on stdout, and the same figures keyed by scenario in a JSON file."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.figures: dict[str, Any] = {}

    def __call__(self, name: str, value: Any, unit: str = "") -> None:
        self.figures[name] = value
        print(f"[reliability] {self.scenario}: {name} = {value}{(' ' + unit) if unit else ''}")

    def save(self) -> None:
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(ARTIFACT.read_text())
        except (OSError, ValueError):
            data = {}
        data[self.scenario] = {"mode": "soak" if SOAK else "reduced", **self.figures}
        ARTIFACT.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Iterator[Reporter]:
    reporter = Reporter(request.node.name)
    yield reporter
    reporter.save()


def is_envelope(body: Any) -> bool:
    """The OpenAI error envelope every middleware and the app answer errors with."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return False
    error = body["error"]
    return isinstance(error.get("message"), str) and isinstance(error.get("type"), str)
