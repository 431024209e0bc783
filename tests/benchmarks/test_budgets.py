"""The budgets table, the parts that measure against it, and its sections of the report.

``data/run-budgets`` holds what ``python -m benchmarks.suite --quick --parts inprocess
instructions roundtrips stream-cost`` wrote on a 2-core machine, trimmed to a few
configurations. Nothing here measures time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import budgets, registry, suite
from benchmarks.budget_verdicts import judge, pace, per_chunk
from benchmarks.budgets import PER_REQUEST, Budget
from benchmarks.instructions import totals
from benchmarks.report import headline, render
from benchmarks.roundtrips import commands_run
from benchmarks.rundata import Run, goals, located

SAMPLE = Path(__file__).parent / "data" / "run-budgets"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run() -> Run:
    return Run.load(SAMPLE)


def _rows(part: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in json.loads((SAMPLE / f"{part}.json").read_text())["rows"]}


def _table_row(text: str, first_cell: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r}")


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


# -- the table itself -------------------------------------------------------------------------


def test_every_budgeted_configuration_is_defined_in_the_registry() -> None:
    defined = set(registry.CONFIGS) | set(registry.UNAVAILABLE)
    named = set(budgets.budgeted()) | set(budgets.ROUND_TRIPS)
    named |= {g.name for g in budgets.HTTP_GOALS} | {g.over for g in budgets.HTTP_GOALS}
    assert named - defined == set()
    in_process = [registry.CONFIGS.get(n) for n in budgets.budgeted()]
    assert not [c.name for c in in_process if c is not None and c.needs]


def test_every_per_chunk_budget_names_a_stream_cost_configuration() -> None:
    # in a process of its own: importing benchmarks.stream_cost here would leave it on the
    # package for the tests that make it unimportable
    listed = (
        "from benchmarks import stream_cost, stream_cost_stack\n"
        "stream_cost.main = lambda argv: None\n"  # register the stack, measure nothing
        "stream_cost_stack.main([])\n"
        "print(' '.join(stream_cost.FACTORIES))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", listed], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert set(budgets.PER_CHUNK) <= set(done.stdout.split())
    assert set(budgets.PER_CHUNK_LABELS) == set(budgets.PER_CHUNK)


def test_a_relative_budget_is_its_floor_plus_its_own_allowance() -> None:
    budget = Budget("tracing:always-on", 10, "x", relative_to="tracing:sdk-floor")
    assert budget.limit({"tracing:sdk-floor": 41.5}) == pytest.approx(51.5)
    assert budget.limit({}) is None
    assert Budget("sse:alone", 4, "x").limit({}) == 4
    assert budget.describe() == "<= `tracing:sdk-floor` + 10"


def test_http_goals_come_from_the_budgets_table() -> None:
    rows = {"bare": 1000.0, "stack:memory-no-sdk": 560.0, "stack:memory": 290.0,
            "peer:stack": 50.0}  # fmt: skip
    http = {"rows": [{"name": n, "rps": v, "ratio": v / 1000.0} for n, v in rows.items()]}
    by_label = {g.label: g for g in goals(Run(http=http))}
    assert by_label["the six together without the SDK, req/s vs bare"].verdict == "met"
    assert by_label["full stack on memory, req/s vs bare"].verdict == "missed"
    peers = by_label["full stack on memory, req/s vs the peer stack"]
    assert peers.target == 5.0
    assert peers.measured == pytest.approx(5.8)


# -- the parts ----------------------------------------------------------------------------


def test_the_suite_writes_the_budget_parts_into_the_run_directory(tmp_path: Path) -> None:
    commands = suite.commands(["inprocess", "instructions", "roundtrips"], suite.FULL, tmp_path)
    for part, module, name in (
        ("inprocess", "benchmarks.inprocess", "inprocess.json"),
        ("instructions", "benchmarks.instructions", "instructions.json"),
        ("roundtrips", "benchmarks.roundtrips", "roundtrips.json"),
    ):
        assert commands[part][2] == module
        assert commands[part][commands[part].index("--out") + 1] == str(tmp_path / name)
    quick = suite.commands(["instructions"], suite.QUICK, tmp_path)["instructions"]
    assert int(quick[quick.index("--requests") + 1]) < suite.FULL.instruction_requests


def test_instructions_are_skipped_with_the_reason_without_valgrind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "valgrind" else real(name))
    assert "valgrind is not installed" in (suite._available("instructions") or "")
    assert suite._available("inprocess") is None


def test_callgrind_dumps_and_commandstats_are_read() -> None:
    assert totals("events: Ir\nsummary: 4010203\ntotals: 4010203\n") == 4010203
    with pytest.raises(ValueError, match="no 'totals:' line"):
        totals("events: Ir\n")
    info = "# Commandstats\ncmdstat_evalsha:calls=10,usec=5\ncmdstat_set:calls=4,usec=1\n"
    info += "cmdstat_info:calls=3,usec=9\ncmdstat_client|setinfo:calls=2,usec=1\n"
    assert commands_run(info) == 14


# -- the report ---------------------------------------------------------------------------


def test_budget_table_puts_each_budget_beside_its_recorded_figure(run: Run) -> None:
    rows, counts = _rows("inprocess"), _rows("instructions")
    text = _section(render(run), "Budgets per request")
    rate = counts["bare"]["per_request"] / rows["bare"]["us"]
    assert f"({rate:,.0f} instructions per us in this run)" in text
    for budget in PER_REQUEST:
        if budget.relative_to or budget.name not in rows:
            continue
        cells = _table_row(text, f"`{budget.name}`")
        added = rows[budget.name]["added"]
        assert cells[2] == f"<= {budget.us:g}"
        assert cells[3].startswith(f"{added:+.1f} (")
        assert cells[4] == ("met" if added <= budget.us else "missed")
        as_us = counts[budget.name]["added"] / rate
        assert cells[5] == f"{counts[budget.name]['added']:+,.0f}"
        assert cells[6] == f"{as_us:+.1f}"
        assert cells[7] == ("met" if as_us <= budget.us else "missed")


def test_a_relative_budget_is_judged_against_the_floor_of_the_same_run(run: Run) -> None:
    rows = _rows("inprocess")
    floor = rows["tracing:sdk-floor"]["added"]
    cells = _table_row(render(run), "`tracing:always-on`")
    assert cells[2] == f"<= `tracing:sdk-floor` + 10 (= {floor + 10:.1f})"
    verdict = "met" if rows["tracing:always-on"]["added"] <= floor + 10 else "missed"
    assert cells[4] == verdict
    text = _section(render(run), "Budgets per request")
    assert "`tracing:sdk-floor` (the SDK's own work" in text
    assert f"{floor:+.1f} us per request in process" in text


def test_a_missed_budget_says_what_bounds_it(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import report_budgets

    missed = [j.budget.name for j in judge(run) if j.missed]
    assert missed, "the recorded run misses at least one budget"
    monkeypatch.delitem(report_budgets.BOUNDS, missed[0], raising=False)
    text = render(run)
    assert f"- `{missed[0]}` misses its budget: not explained yet; `python -m " in text

    monkeypatch.setitem(report_budgets.BOUNDS, missed[0], "the SDK's span, which it must make")
    assert f"- `{missed[0]}` misses its budget: the SDK's span, which it must make" in render(run)
    met = [j.budget.name for j in judge(run) if not j.missed and j.added is not None]
    assert not any(f"- `{name}` misses" in text for name in met)


def test_budgets_without_figures_are_not_measured(run: Run) -> None:
    bare_only = Run(inprocess={"rows": [{"name": "bare", "us": 20.0, "added": 0.0}]})
    judged = judge(bare_only)
    assert {j.verdict for j in judged} == {"not measured"}
    assert pace(bare_only) is None
    assert "Not measured in this run" in _section(render(Run()), "Budgets per request")


def test_round_trips_are_judged_against_their_bound(run: Run) -> None:
    text = _section(render(run), "Redis round trips")
    for name, row in _rows("roundtrips").items():
        cells = _table_row(text, f"`{name}`")
        assert cells[2] == f"{row['round_trips']:.2f}"
        assert cells[3] == f"<= {budgets.ROUND_TRIPS[name][1]}"
        assert cells[4] == ("met" if row["round_trips"] <= row["bound"] else "missed")
        assert cells[5] == f"{row['commands']:.2f}"


def test_the_per_chunk_figure_of_the_stack_is_read_from_the_stream_cost_output(run: Run) -> None:
    figures = per_chunk(run)
    assert set(figures) >= {"sse", "stack"}
    text = _section(render(run), "Budget per streamed chunk")
    cells = _table_row(text, "`stack`")
    assert cells[2] == "<= 12"
    assert cells[3] == f"{figures['stack']:+.1f}"
    assert cells[4] == ("met" if figures["stack"] <= 12 else "missed")
    assert per_chunk(Run(stream_cost="# no figures\n")) == {}


def test_the_readme_headline_carries_the_budgets(run: Run) -> None:
    block = headline(run)
    rows = _rows("inprocess")
    cells = _table_row(block, "SSEMiddleware (JSON response passing through)")
    assert cells[1] == "<= 4 us"
    assert cells[2].startswith(f"{rows['sse:alone']['added']:+.1f} (")
    assert _table_row(block, "the six together, per streamed chunk")[1] == "<= 12 us per chunk"
    assert "Hot-path budgets" not in headline(Run())


def test_every_in_process_configuration_and_count_is_listed(run: Run) -> None:
    text = render(run)
    every = _section(text, "Every configuration in process")
    for name, row in _rows("inprocess").items():
        assert _table_row(every, f"`{name}`")[1] == f"{row['us']:.1f}"
    counts = _section(text, "Instruction counts")
    for name, row in _rows("instructions").items():
        assert _table_row(counts, f"`{name}`")[1] == f"{row['per_request']:,.0f}"


def test_a_missed_budget_gives_its_largest_shares_from_the_runs_profile(run: Run) -> None:
    assert run.profile is not None
    prof = next(p for p in run.profile["profiles"] if p["name"] == "idempotency:memory-fresh")
    first, second = prof["components"][:2]
    line = next(
        x for x in render(run).splitlines() if x.startswith("- `idempotency:memory-fresh` misses")
    )
    assert f"Its own time under cProfile: {first['component']} {first['share']:.0%}, " in line
    assert f"{second['component']} {second['share']:.0%}" in line
    top = prof["functions"][0]
    assert f"first function `{located(top['function'], top['component'])}`" in line
    unprofiled = next(x for x in render(run).splitlines() if x.startswith("- `ratelimit:memory`"))
    assert "cProfile" not in unprofiled


def test_only_the_stack_and_the_peers_are_profiled_in_full(run: Run) -> None:
    section = _section(render(run), "Where the time goes")
    assert "`stack:memory`, 200 requests" in section
    assert "`idempotency:memory-fresh`, 200" not in section


def test_the_suite_profiles_the_budgeted_configurations_too(tmp_path: Path) -> None:
    command = suite.commands(["profile"], suite.QUICK, tmp_path)["profile"]
    names = command[3 : command.index("--requests")]
    assert names[:2] == ["stack:memory", "peer:stack"]
    assert set(names) == {"stack:memory", "peer:stack", *budgets.budgeted()} & set(registry.CONFIGS)


def test_a_missed_chunk_budget_and_round_trip_bound_say_what_bounds_them(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import report_budgets

    assert per_chunk(run)["stack"] > 12  # the recorded run misses it
    monkeypatch.delitem(report_budgets.BOUNDS, "stream-cost:stack", raising=False)
    chunk = _section(render(run), "Budget per streamed chunk")
    assert "- `stack` misses its budget per chunk: not explained yet; `python -m " in chunk
    monkeypatch.setitem(report_budgets.BOUNDS, "stream-cost:stack", "the SDK's span events")
    assert "per chunk: the SDK's span events" in render(run)
    assert "more round trips" not in render(run)  # every recorded figure is within its bound
    assert run.roundtrips is not None
    run.roundtrips["rows"][0]["round_trips"] = 3.0
    name = run.roundtrips["rows"][0]["name"]
    monkeypatch.setitem(report_budgets.BOUNDS, f"roundtrips:{name}", "a lease renewal")
    text = _section(render(run), "Redis round trips")
    assert f"- `{name}` makes more round trips than its bound: a lease renewal" in text


def test_the_report_says_when_the_instruction_counts_were_skipped(run: Run) -> None:
    reason = "skipped: valgrind is not installed (apt-get install valgrind), no instruction counts"
    run.meta["parts"]["instructions"] = reason
    run.instructions = None
    text = render(run)
    assert f"- part `instructions`: {reason}" in _section(text, "Not measured in this run")
    cells = _table_row(_section(text, "Budgets per request"), "`sse:alone`")
    assert cells[5:] == ["-", "-", "not measured"]
    assert cells[4] in {"met", "missed"}  # the in-process figure is still judged
