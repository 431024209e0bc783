"""The budget sections of docs/benchmarks.md: in process, instructions, round trips, per chunk.

Pure functions of a loaded :class:`~benchmarks.rundata.Run`, judged by
:mod:`benchmarks.budget_verdicts`; :mod:`benchmarks.report` places them on the page and in the
README's headline.
"""

from __future__ import annotations

from .bounds import BOUNDS
from .budget_verdicts import Judged, by_name, judge, pace, per_chunk, verdict
from .budgets import PER_CHUNK, PER_CHUNK_LABELS, PER_REQUEST, ROUND_TRIPS
from .rundata import Run, located

BUDGET_HEADER = ["configuration", "what", "budget us", "added us", "verdict",
                 "added instructions", "as us", "verdict"]  # fmt: skip
ROUND_TRIP_HEADER = ["configuration", "store work", "round trips", "bound", "verdict",
                     "commands run"]  # fmt: skip


def _table(header: list[str], rows: list[list[str]], *, text: int = 1) -> list[str]:
    align = ["---"] * text + ["--:"] * (len(header) - text)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def _spread(spread: tuple[float, float] | None) -> str:
    return "" if spread is None else f" ({spread[0]:+.1f} to {spread[1]:+.1f})"


def _limit(j: Judged, limit: float | None, unit: str = "") -> str:
    if j.budget.relative_to is None or limit is None:
        return j.budget.describe() + unit
    return f"{j.budget.describe()}{unit} (= {limit:.1f})"


def _floor(run: Run) -> list[str]:
    floors = {b.relative_to for b in PER_REQUEST if b.relative_to}
    rows, counts, rate = by_name(run.inprocess), by_name(run.instructions), pace(run)
    lines = []
    for name in sorted(floors):
        figures = []
        if name in rows:
            figures.append(f"{rows[name]['added']:+.1f} us per request in process")
        if name in counts and "added" in counts[name]:
            shown = f"{counts[name]['added']:+,.0f} instructions per request"
            figures.append(shown + (f" ({counts[name]['added'] / rate:.1f} us at bare's pace)"
                                    if rate else ""))  # fmt: skip
        if figures:
            lines.append(f"- The OpenTelemetry SDK's floor, `{name}` (the SDK's own work for "
                         f"the span and records tracing makes): {', '.join(figures)}.")  # fmt: skip
    return lines


def _where(run: Run, name: str) -> str:
    """The largest shares of ``name``'s profile in this run, or an empty string."""
    profiles = {p["name"]: p for p in (run.profile or {}).get("profiles", [])}
    prof = profiles.get(name)
    if not prof:
        return ""
    parts = ", ".join(f"{c['component']} {c['share']:.0%}" for c in prof["components"][:3])
    top = prof["functions"][0] if prof.get("functions") else None
    first = (
        f"; first function `{located(top['function'], top['component'])}` {top['share']:.0%}"
        if top
        else ""
    )
    return f" Its own time under cProfile: {parts}{first}."


def missed_lines(judged: list[Judged], run: Run | None = None) -> list[str]:
    """What bounds each missed budget: benchmarks/bounds.py's line, or how to find out; and
    where its time went in this run's profile, when the profile part ran."""
    lines = []
    for j in judged:
        if not j.missed:
            continue
        name = j.budget.name
        why = _bound(name, f"python -m benchmarks.inprocess --profile {name}")
        lines.append(f"- `{name}` misses its budget: {why}{_where(run or Run(), name)}")
    return lines


def _bound(key: str, command: str) -> str:
    """benchmarks/bounds.py's line for ``key``, or the command that shows where time goes."""
    return BOUNDS.get(key) or (
        f"not explained yet; `{command}` shows where its time goes (say it in "
        "benchmarks/bounds.py)."
    )


def budgets_section(run: Run) -> list[str]:
    """The per-request budgets table, the SDK's floor, and what bounds each one missed."""
    if run.inprocess is None and run.instructions is None:
        return ["## Budgets per request", "", "Not measured in this run (parts `inprocess` and "
                "`instructions`)."]  # fmt: skip
    judged = judge(run)
    rows = [
        [
            f"`{j.budget.name}`",
            j.budget.label,
            _limit(j, j.limit),
            _us(j.added) + _spread(j.spread),
            j.verdict,
            "-" if j.instructions is None else f"{j.instructions:+,.0f}",
            _us(j.as_us),
            j.instr_verdict,
        ]
        for j in judged
    ]
    settings = (run.inprocess or {}).get("settings", {})
    counted = (run.instructions or {}).get("settings", {})
    rate = pace(run)
    lines = [
        "## Budgets per request",
        "",
        "CPU microseconds each configuration adds per request over bare Starlette, in process "
        f"(`python -m benchmarks.inprocess`: {settings.get('requests', '?')} requests per run, "
        f"{settings.get('rounds', '?')} interleaved rounds, best of {settings.get('repeat', '?')}"
        "; median, and the lowest and highest round), and the instructions it adds per request "
        f"under callgrind ({counted.get('requests', '?')} requests, `python -m "
        "benchmarks.instructions`), which the machine's load does not move. The instructions "
        "are judged at bare's pace"
        + (f" ({rate:,.0f} instructions per us in this run)" if rate else "")
        + ": the budget in us times that pace.",
        "",
        *_table(BUDGET_HEADER, rows, text=2),
    ]
    extra = _floor(run) + missed_lines(judged, run)
    return lines + (["", *extra] if extra else [])


def inprocess_section(run: Run) -> list[str]:
    """Every configuration measured in process, and the instruction counts."""
    lines: list[str] = []
    if run.inprocess:
        rows = [
            [f"`{r['name']}`", f"{r['us']:.1f}", f"{r['us_min']:.1f}-{r['us_max']:.1f}",
             f"{r['added']:+.1f}", f"{r['ratio']:.2f}x"]
            for r in run.inprocess["rows"]
        ]  # fmt: skip
        header = ["configuration", "us/request", "lowest-highest round", "added us", "x bare"]
        lines += ["## Every configuration in process", "", *_table(header, rows)]
    if run.instructions:
        requests = run.instructions.get("settings", {}).get("requests", "?")
        rows = [
            [f"`{r['name']}`", f"{r['per_request']:,.0f}", f"{r.get('added', 0):+,.0f}"]
            for r in run.instructions["rows"]
        ]
        lines += [
            "",
            "## Instruction counts",
            "",
            f"callgrind, {requests} requests per configuration, after a warm-up "
            "(`python -m benchmarks.instructions`: `valgrind --tool=callgrind "
            "--toggle-collect=functools_reduce python -m benchmarks.inprocess --drive "
            "NAME...`, one dump per configuration).",
            "",
            *_table(["configuration", "instructions per request", "added over bare"], rows),
        ]
    return lines


def roundtrips_section(run: Run) -> list[str]:
    """Redis round trips per request against their bound, and the stack's ratio over HTTP."""
    if run.roundtrips is None:
        return []
    rows = []
    for r in run.roundtrips["rows"]:
        bound = r.get("bound")
        rows.append([f"`{r['name']}`", r.get("what", ""), f"{r['round_trips']:.2f}",
                     "-" if bound is None else f"<= {bound}", verdict(r["round_trips"], bound),
                     f"{r['commands']:.2f}"])  # fmt: skip
    requests = run.roundtrips.get("settings", {}).get("requests", "?")
    missed = [
        f"- `{r['name']}` makes more round trips than its bound: "
        + _bound(f"roundtrips:{r['name']}", f"python -m benchmarks.roundtrips --only {r['name']}")
        for r in run.roundtrips["rows"]
        if verdict(r["round_trips"], r.get("bound")) == "missed"
    ]
    lines = [
        "## Redis round trips",
        "",
        f"Per request, {requests} requests driven in process against a real redis-server "
        "(`python -m benchmarks.roundtrips`): request/response exchanges on the client's "
        "connections (a pipeline or a script is one), at most two for each middleware that "
        "uses the store; beside them the commands the server ran (scripts' own included).",
        "",
        *_table(ROUND_TRIP_HEADER, rows, text=2),
        *(["", *missed] if missed else []),
    ]
    http = run.rows().get("stack:redis")
    if http:
        lines += ["", f"`stack:redis` over HTTP in this run: {http['ratio']:.2f}x of bare."]
    return lines


def per_chunk_section(run: Run) -> list[str]:
    """The per-chunk budgets against the stream-cost part's figures."""
    figures = per_chunk(run)
    rows = [
        [f"`{name}`", PER_CHUNK_LABELS.get(name, ""), f"<= {limit:g}", _us(figures.get(name)),
         verdict(figures.get(name), limit)]
        for name, limit in PER_CHUNK.items()
    ]  # fmt: skip
    if run.stream_cost is None:
        return []
    missed = [
        f"- `{name}` misses its budget per chunk: "
        + _bound(f"stream-cost:{name}", f"python -m benchmarks.stream_cost_stack --only {name}")
        for name, limit in PER_CHUNK.items()
        if verdict(figures.get(name), limit) == "missed"
    ]
    return [
        "## Budget per streamed chunk",
        "",
        "Microseconds added per chunk of a long event stream, in process "
        '(`python -m benchmarks.stream_cost_stack`; its whole output is under "Per-chunk cost of '
        'the stack" below).',
        "",
        *_table(["configuration", "what", "budget us", "added us", "verdict"], rows, text=2),
        *(["", *missed] if missed else []),
    ]


def headline_rows(run: Run) -> list[list[str]]:
    """The README's budget rows: label, budget, measured, verdict."""
    rows = []
    for j in judge(run):
        measured = _us(j.added) if j.added is not None else "-"
        if j.as_us is not None:
            measured += f" ({j.as_us:+.1f} by instructions)"
        said = j.verdict
        if j.instr_verdict not in (said, "not measured"):
            said += f" ({j.instr_verdict} by instructions)"
        rows.append([j.budget.label, _limit(j, j.limit, " us"), measured, said])
    figures = per_chunk(run)
    for name, limit in PER_CHUNK.items():
        got = figures.get(name)
        rows.append([PER_CHUNK_LABELS.get(name, name), f"<= {limit:g} us per chunk", _us(got),
                     verdict(got, limit)])  # fmt: skip
    rows += [
        [f"`{r['name']}` Redis round trips per request", f"<= {r['bound']}",
         f"{r['round_trips']:.2f}", verdict(r["round_trips"], r["bound"])]
        for r in (run.roundtrips or {}).get("rows", [])
        if r.get("bound") is not None and r["name"] in ROUND_TRIPS
    ]  # fmt: skip
    return rows
