"""One run's results as loaded from its directory, and the goals they are judged against."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .budgets import HTTP_GOALS

Row = dict[str, Any]
# groups drawn as series (a figure against body size or stream length), not in the main table
SERIES_GROUPS = ("payload", "stream")
# profiled in process (benchmarks.profile) and shown in full: where the stack's and the peers'
# time goes (the budgeted configurations are profiled too, for their missed budgets' lines)
PROFILED: Final = ("stack:memory", "peer:stack")


@dataclass
class Run:
    """Everything one run produced, as loaded from its directory."""

    meta: dict[str, Any] = field(default_factory=dict)
    http: dict[str, Any] | None = None
    scaling: dict[str, Any] | None = None
    streaming: dict[str, Any] | None = None
    stream_cost: str | None = None
    profile: dict[str, Any] | None = None
    inprocess: dict[str, Any] | None = None
    instructions: dict[str, Any] | None = None
    roundtrips: dict[str, Any] | None = None
    priority: dict[str, Any] | None = None

    @classmethod
    def load(cls, directory: Path) -> Run:
        """Read a run directory; a part that did not run is None.

        >>> run = Run.load(Path("benchmarks/results/run-20261122-053000"))  # doctest: +SKIP
        """

        def part(name: str) -> dict[str, Any] | None:
            path = directory / f"{name}.json"
            return json.loads(path.read_text()) if path.exists() else None

        cost = directory / "stream_cost.txt"
        return cls(
            meta=part("run") or {},
            http=part("http"),
            scaling=part("scaling"),
            streaming=part("streaming"),
            stream_cost=cost.read_text() if cost.exists() else None,
            profile=part("profile"),
            inprocess=part("inprocess"),
            instructions=part("instructions"),
            roundtrips=part("roundtrips"),
            priority=part("priority"),
        )

    def rows(self) -> dict[str, Row]:
        return {r["name"]: r for r in (self.http or {}).get("rows", [])}

    def unavailable(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in (self.http, self.scaling):
            for entry in (part or {}).get("unavailable", []):
                out.setdefault(entry["name"], entry["reason"])
        return out


@dataclass(frozen=True)
class Goal:
    label: str
    target: float
    measured: float | None
    why_missing: str = ""
    # a caveat on a measured figure (what it measured instead of what the goal names)
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        verdict = "met" if self.measured >= self.target else "missed"
        return f"{verdict} ({self.note})" if self.note else verdict


def goals(run: Run) -> list[Goal]:
    """The issue's targets, each with the figure this run measured (None where it did not)."""
    rows = run.rows()
    missing = run.unavailable()

    def ratio(name: str) -> float | None:
        return rows[name]["ratio"] if name in rows else None

    def over(a: str, b: str) -> float | None:
        if a in rows and b in rows and rows[b]["rps"] > 0:
            return float(rows[a]["rps"] / rows[b]["rps"])
        return None

    stream = (run.streaming or {}).get("summary", {})
    mounted = (run.streaming or {}).get("middlewares", "importable")
    bare_reference = (
        "" if mounted == "importable" else f"the reference app without the stack: {mounted}"
    )

    def tps(over_path: str) -> float | None:
        if "reference" in stream and over_path in stream and stream[over_path]["decode_tps"]:
            return float(stream["reference"]["decode_tps"] / stream[over_path]["decode_tps"])
        return None

    return [
        *(
            Goal(g.label, g.target,
                 ratio(g.name) if g.over == "bare" else over(g.name, g.over),
                 missing.get(g.name, "") or missing.get(g.over, ""))
            for g in HTTP_GOALS
        ),
        Goal("reference app streamed tokens/s vs llama-cpp-python's server", 1.0,
             tps("llama-server"), note=bare_reference),
        Goal("reference app streamed tokens/s vs in-process llama-cpp-python", 0.95,
             tps("in-process"), note=bare_reference),
        *(
            Goal(f"`{name}` alone, req/s vs bare", target, ratio(name), missing.get(name, ""))
            for name, target in ALONE
        ),
    ]  # fmt: skip


# each middleware alone, with the goal its own issue sets (docs/<middleware>.md)
ALONE: Final = (
    ("idempotency:memory-fresh", 0.90),
    ("ratelimit:memory", 0.90),
    ("oauth:jwt-rs256", 0.85),
    ("oauth:api-key", 0.95),
    ("tracing:always-on", 0.75),
    ("sse:alone", 0.95),
    ("normalize:alone", 0.95),
)


def limits(run: Run) -> list[str]:
    """What bounds the full stack's ratio, from this run's own figures: the OpenTelemetry SDK's
    floor and the stack without the SDK."""
    rows = run.rows()
    lines = []
    if "tracing:sdk-floor" in rows:
        lines.append(
            f"- `tracing:sdk-floor` (only the SDK's work for the span and the histogram records "
            f"that tracing makes per request) reached {rows['tracing:sdk-floor']['ratio']:.2f}x "
            "of bare: no stack that traces every request with this SDK can go above it."
        )
    if "stack:memory-no-sdk" in rows:
        lines.append(
            f"- The full stack with tracing on the OpenTelemetry API alone "
            f"(`stack:memory-no-sdk`) reached {rows['stack:memory-no-sdk']['ratio']:.2f}x of bare."
        )
    return lines


def _group_order(groups: list[str]) -> list[str]:
    # baseline and the full stack first, then one group per middleware, the peers last
    middle = sorted(g for g in groups if g not in {"baseline", "stack", "peers", *SERIES_GROUPS})
    return [g for g in ("baseline", "stack", *middle, "peers") if g in groups]


def main_rows(run: Run) -> list[Row]:
    """The rows of the main table and ratio plot, grouped, without the series."""
    rows = list(run.rows().values())
    order = _group_order(sorted({r["group"] for r in rows}))
    return [r for g in order for r in rows if r["group"] == g]


def paired(run: Run, group: str) -> dict[str, dict[str, Row]]:
    """``{variant: {point: row}}`` for names shaped ``<kind>:<variant>:<point>``."""
    out: dict[str, dict[str, Row]] = {}
    for row in run.rows().values():
        if row["group"] == group and row["name"].count(":") == 2:
            _, variant, point = row["name"].split(":")
            out.setdefault(variant, {})[point] = row
    return out


def point_value(point: str) -> float:
    match = re.fullmatch(r"(\d+)([km]?)", point)
    if not match:
        return float("inf")
    return int(match.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2)]


def located(function: str, component: str) -> str:
    """A profiled function with its package's folder, as a reader finds the file:
    ``idempotency/_keys.py:101(canonical_json)``; functions outside the library as profiled.

    >>> located("_keys.py:101(canonical_json)", "aimiddleware.idempotency")
    'idempotency/_keys.py:101(canonical_json)'
    >>> located("_asgi.py:10(get_header)", "aimiddleware (shared)")
    'aimiddleware/_asgi.py:10(get_header)'
    >>> located("requests.py:255(body)", "starlette")
    'requests.py:255(body)'
    """
    if component.startswith("aimiddleware."):
        return f"{component.removeprefix('aimiddleware.')}/{function}"
    if component.startswith("aimiddleware"):
        return f"aimiddleware/{function}"
    return function
