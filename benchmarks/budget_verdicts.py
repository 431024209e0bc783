"""This run's figures against :mod:`benchmarks.budgets`: the verdicts the report prints.

Instruction counts carry no unit of time, so their budget is the microsecond budget at bare's
own pace: bare's instructions per request over its microseconds per request in the same run.
That turns a noise-free count into a verdict a loaded machine cannot move (an estimate: the
middlewares' code need not run at bare's instructions per microsecond).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .budgets import PER_REQUEST, Budget
from .rundata import Run

_ADDED_PER_CHUNK = re.compile(r"^(\S+)\s+([+-]\d+(?:\.\d+)?)\s+\(added per chunk\)", re.M)


def verdict(measured: float | None, limit: float | None) -> str:
    if measured is None or limit is None:
        return "not measured"
    return "met" if measured <= limit else "missed"


def by_name(part: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in (part or {}).get("rows", [])}


@dataclass(frozen=True)
class Judged:
    """One budget with this run's figures: microseconds in process, instructions."""

    budget: Budget
    limit: float | None  # us, the floor added where the budget is relative
    added: float | None  # us per request over bare, in process
    spread: tuple[float, float] | None  # lowest and highest round's added us
    instructions: float | None  # instructions per request over bare
    as_us: float | None  # those instructions at bare's pace, in us
    instr_limit: float | None  # the limit with the floor taken from instructions

    @property
    def verdict(self) -> str:
        return verdict(self.added, self.limit)

    @property
    def instr_verdict(self) -> str:
        return verdict(self.as_us, self.instr_limit)

    @property
    def missed(self) -> bool:
        return "missed" in (self.verdict, self.instr_verdict)


def pace(run: Run) -> float | None:
    """Bare's instructions per microsecond in this run, or None without both figures."""
    bare_us = by_name(run.inprocess).get("bare", {}).get("us")
    bare_instr = by_name(run.instructions).get("bare", {}).get("per_request")
    return bare_instr / bare_us if bare_us and bare_instr else None


def judge(run: Run) -> list[Judged]:
    """Every per-request budget against this run's in-process figures and instruction counts."""
    rows, counts, rate = by_name(run.inprocess), by_name(run.instructions), pace(run)
    bare_rounds = rows.get("bare", {}).get("rounds")
    added = {n: r["added"] for n, r in rows.items()}
    as_us = {n: r["added"] / rate for n, r in counts.items() if rate and "added" in r}
    out = []
    for b in PER_REQUEST:
        row = rows.get(b.name)
        spread = None
        if row and bare_rounds and len(row.get("rounds", [])) == len(bare_rounds):
            each = [v - base for v, base in zip(row["rounds"], bare_rounds, strict=True)]
            spread = (min(each), max(each))
        count = counts.get(b.name, {}).get("added")
        out.append(
            Judged(b, b.limit(added), row["added"] if row else None, spread, count,
                   as_us.get(b.name), b.limit(as_us))
        )  # fmt: skip
    return out


def per_chunk(run: Run) -> dict[str, float]:
    """Microseconds added per chunk, by configuration, from the stream-cost part's output."""
    text = (run.stream_cost or "").split("\n\n", 1)[0]
    return {name: float(value) for name, value in _ADDED_PER_CHUNK.findall(text)}
