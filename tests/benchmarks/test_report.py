"""The JSON-to-markdown path of the performance report, on a small recorded run.

``data/run-sample`` holds what ``python -m benchmarks.suite --quick --parts http scaling`` wrote
on a 2-core machine, trimmed to a few configurations. Nothing here measures time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks.report import README_END, README_START, headline, render, update_readme, write
from benchmarks.rundata import Run, goals, main_rows, paired

SAMPLE = Path(__file__).parent / "data" / "run-sample"


@pytest.fixture
def run() -> Run:
    return Run.load(SAMPLE)


def _recorded(name: str) -> dict[str, Any]:
    rows = json.loads((SAMPLE / "http.json").read_text())["rows"]
    return next(r for r in rows if r["name"] == name)


def _table_row(text: str, first_cell: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r}")


def test_load_reads_every_part_that_ran(run: Run) -> None:
    assert run.http is not None
    assert run.scaling is not None
    assert run.streaming is not None
    assert run.stream_cost is None  # that part was skipped in the recorded run
    assert run.meta["parts"]["stream-cost"].startswith("skipped")


def test_main_table_shows_each_configuration_with_its_recorded_figures(run: Run) -> None:
    text = render(run)
    for name in ("bare", "peer:base-http-noop", "peer:stack"):
        row = _recorded(name)
        cells = _table_row(text, f"`{name}`")
        assert cells[2] == f"{row['rps']:,.0f}"
        assert cells[3] == f"{row['ratio']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
        assert cells[4] == f"{row['p50_ms']:.2f}"
        assert cells[6] == f"{row['p99_ms']:.2f}"


def test_series_are_kept_out_of_the_main_table(run: Run) -> None:
    names = [r["name"] for r in main_rows(run)]
    assert names[0] == "bare"
    assert names[-1] == "peer:stack"  # peers come last
    assert not any(n.startswith(("size:", "stream:")) for n in names)


def test_payload_and_stream_series_get_their_own_tables(run: Run) -> None:
    text = render(run)
    payload = text.split("## Cost against request body size", 1)[1]
    assert _table_row(payload, "1m")[1] == f"{_recorded('size:bare:1m')['rps']:,.0f}"
    stream = text.split("## Cost against stream length", 1)[1]
    long = _recorded("stream:bare:1000")
    assert _table_row(stream, "1000")[2:4] == [f"{1000 / long['rps']:.2f}", f"{long['p50_ms']:.2f}"]
    assert set(paired(run, "payload")["bare"]) == {"1k", "1m"}


def test_unavailable_configurations_and_failed_parts_are_listed_with_the_reason(run: Run) -> None:
    text = render(run)
    section = text.split("## Not measured in this run", 1)[1].split("\n## ", 1)[0]
    assert "- part `stream-cost`: skipped: benchmarks/stream_cost.py is not in" in section
    assert "- `stack:memory`: not available yet: ModuleNotFoundError" in section
    assert "`size:stack-memory:1k`" in section
    assert "part `http`" not in section


def test_machine_and_versions_come_from_the_results(run: Run) -> None:
    assert run.http is not None
    machine = run.http["machine"]
    text = render(run)
    assert f"CPU: {machine['cpu']}, {machine['cpus']} logical cores" in text
    assert _table_row(text, "starlette")[1] == machine["packages"]["starlette"]


def test_scaling_table_has_a_row_per_worker_count(run: Run) -> None:
    assert run.scaling is not None
    text = render(run).split("## Scaling with uvicorn workers", 1)[1]
    for row in run.scaling["rows"]:
        cells = _table_row(text, str(row["workers"]))
        assert cells[1].startswith(f"{row['rps']:,.0f} (")


def test_streaming_table_gives_ratios_to_in_process_and_to_the_llama_server(run: Run) -> None:
    assert run.streaming is not None
    summary = run.streaming["summary"]
    text = render(run).split("## Streamed generation", 1)[1]
    cells = _table_row(text, "reference")
    assert cells[1] == f"{summary['reference']['ttft_p50_ms']:.1f}"
    assert cells[2] == f"{summary['reference']['decode_tps']:.1f}"
    in_process = summary["reference"]["decode_tps"] / summary["in-process"]["decode_tps"]
    server = summary["reference"]["decode_tps"] / summary["llama-server"]["decode_tps"]
    assert cells[3] == f"{in_process:.2f}x"
    assert cells[4] == f"{server:.2f}x"
    goal = _table_row(render(run), "reference app streamed tokens/s vs llama-cpp-python's server")
    assert goal[2] == f"{server:.2f}x"


def _run_with(rows: dict[str, float], **parts: Any) -> Run:
    def row(name: str, rps: float) -> dict[str, Any]:
        ratio = rps / rows["bare"]
        return {
            "name": name,
            "group": name.split(":")[0] if ":" in name else "baseline",
            "rps": rps,
            "ratio": ratio,
            "ratio_min": ratio,
            "ratio_max": ratio,
            "p50_ms": 1.0 / ratio,
            "p50_ratio": 1.0 / ratio,
            "p99_ms": 2.0 / ratio,
            "p99_ratio": 1.0 / ratio,
            "errors": 0,
        }

    http = {
        "rows": [row(n, rps) for n, rps in rows.items()],
        "unavailable": parts.pop("unavailable", []),
    }
    return Run(http=http, **parts)


def test_stream_series_gives_the_stack_cost_per_request_and_per_chunk() -> None:
    run = _run_with({"bare": 1000.0, "stream:bare:1000": 100.0, "stream:stack-memory:1000": 80.0})
    for row in run.rows().values():
        row["group"] = "stream" if row["name"].startswith("stream:") else "baseline"
    text = render(run).split("## Cost against stream length", 1)[1]
    cells = _table_row(text, "1000")
    added_ms = 1000 / 80.0 - 1000 / 100.0  # 2.5 ms more server time per request
    assert cells[-2] == f"{added_ms:.2f}"
    assert cells[-1] == f"{added_ms * 1000 / 1000:.1f}"  # spread over 1000 chunks, in us


def test_latency_ratios_show_their_spread_over_rounds_when_recorded() -> None:
    run = _run_with({"bare": 1000.0, "peer:x": 500.0})
    row = run.rows()["peer:x"]
    row.update(p99_ratio=3.0, p99_ratio_min=2.5, p99_ratio_max=4.25)
    cells = _table_row(render(run), "`peer:x`")
    assert cells[7] == "3.00x (2.50-4.25)"
    assert cells[5] == f"{row['p50_ratio']:.2f}x"  # no spread recorded: the median alone


def test_goals_are_judged_against_their_targets() -> None:
    run = _run_with(
        {"bare": 1000.0, "stack:memory": 650.0, "stack:redis": 300.0, "peer:stack": 250.0},
        streaming={
            "summary": {
                "in-process": {"decode_tps": 200.0},
                "llama-server": {"decode_tps": 150.0},
                "reference": {"decode_tps": 180.0},
            }
        },
    )
    by_label = {g.label: g for g in goals(run)}
    memory = by_label["full stack on memory, req/s vs bare"]
    assert memory.measured == pytest.approx(0.65)
    assert memory.verdict == "met"
    assert by_label["full stack on memory, req/s vs the peer stack"].measured == pytest.approx(2.6)
    assert by_label["full stack on memory, req/s vs the peer stack"].verdict == "missed"
    assert by_label["full stack on Redis, req/s vs bare"].verdict == "missed"
    server = by_label["reference app streamed tokens/s vs llama-cpp-python's server"]
    assert server.measured == pytest.approx(1.2)
    assert server.verdict == "met"
    in_process = by_label["reference app streamed tokens/s vs in-process llama-cpp-python"]
    assert in_process.measured == pytest.approx(0.9)
    assert in_process.verdict == "missed"


def test_streaming_goals_say_when_the_reference_app_ran_without_the_middlewares() -> None:
    reason = "not available yet: ModuleNotFoundError: No module named 'aimiddleware.tracing'"
    summary = {"in-process": {"decode_tps": 100.0}, "reference": {"decode_tps": 99.0}}
    run = _run_with({"bare": 1000.0}, streaming={"summary": summary, "middlewares": reason})
    goal = next(g for g in goals(run) if g.label.endswith("in-process llama-cpp-python"))
    assert goal.verdict == f"met (the reference app without the stack: {reason})"


def test_a_goal_without_its_configuration_says_why() -> None:
    reason = "not available yet: ModuleNotFoundError: No module named 'aimiddleware.tracing'"
    run = _run_with(
        {"bare": 1000.0},
        unavailable=[{"name": "stack:redis", "group": "stack", "reason": reason}],
    )
    text = render(run)
    cells = _table_row(text, "full stack on Redis, req/s vs bare")
    assert cells[2] == "-"
    assert cells[3] == f"not measured ({reason})"


def test_readme_block_is_replaced_in_place_and_nothing_else_changes(run: Run) -> None:
    before = (
        "# p\n\n## Benchmarks\n\nintro\n\n" + README_START + "\nold\n" + README_END + "\ntail\n"
    )
    after = update_readme(before, headline(run))
    assert after.startswith("# p\n\n## Benchmarks\n\nintro\n\n" + README_START)
    assert after.endswith(README_END + "\ntail\n")
    assert "old" not in after
    assert update_readme(after, headline(run)) == after  # regenerating is stable


def test_readme_block_is_added_under_the_benchmarks_heading_the_first_time(run: Run) -> None:
    text = update_readme("# p\n\n## Benchmarks\n\nintro\n\n## Next\n\nmore\n", headline(run))
    assert text.index("## Benchmarks") < text.index("intro") < text.index(README_START)
    assert text.index(README_END) < text.index("## Next")
    assert text.endswith("\n\n## Next\n\nmore\n")
    assert update_readme("# p\n", headline(run)).endswith(README_END + "\n")


def test_write_draws_the_plots_that_the_page_links(run: Run, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# p\n\n## Benchmarks\n")
    docs = write(SAMPLE, docs=tmp_path / "docs" / "benchmarks.md", readme=readme)
    text = docs.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {Path(link).name for link in links} == {
        "ratios.png",
        "latency.png",
        "payload.png",
        "stream.png",
        "scaling.png",
    }
    for link in links:
        assert (docs.parent / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert README_START in readme.read_text()
    kept = docs.parent / "benchmarks" / "run"
    for name in ("run.json", "http.json", "scaling.json", "streaming.json"):
        assert (kept / name).read_bytes() == (SAMPLE / name).read_bytes()
    again = write(kept, docs=tmp_path / "again.md", readme=None)  # from the kept copy alone
    assert again.read_text() == text


def test_each_middleware_alone_is_judged_against_its_own_issue_goal() -> None:
    run = _run_with({"bare": 1000.0, "sse:alone": 960.0, "idempotency:memory-fresh": 500.0})
    by_label = {g.label: g for g in goals(run)}
    assert by_label["`sse:alone` alone, req/s vs bare"].verdict == "met"
    fresh = by_label["`idempotency:memory-fresh` alone, req/s vs bare"]
    assert fresh.measured == pytest.approx(0.5)
    assert fresh.verdict == "missed"
    assert by_label["`ratelimit:memory` alone, req/s vs bare"].verdict == "not measured"


def test_the_goals_say_what_bounds_the_full_stack_from_the_run_itself() -> None:
    run = _run_with({"bare": 1000.0, "tracing:sdk-floor": 550.0, "stack:memory-no-sdk": 420.0})
    text = render(run)
    assert "reached 0.55x of bare: no stack that traces every request" in text
    assert "(`stack:memory-no-sdk`) reached 0.42x of bare" in text
    assert "What bounds the full stack" not in render(_run_with({"bare": 1000.0}))


def test_priority_section_gives_the_human_wait_with_and_without_priority() -> None:
    priority = {
        "settings": {"rounds": 3, "agent_tokens": 64, "agents": 8},
        "summary": {
            "priority": {"ttft_p50_ms": 3200.4, "ttft_ms": [3100.0, 3200.4, 3300.0]},
            "fifo": {"ttft_p50_ms": 21400.0, "ttft_ms": [21000.0, 21400.0, 22000.0]},
        },
        "speedup": 21400.0 / 3200.4,
    }
    text = render(_run_with({"bare": 1000.0}, priority=priority))
    section = text.split("## Priority between tiers", 1)[1]
    assert "8 agent streams of 64 tokens" in section
    assert _table_row(section, "priority")[1] == "3200"
    assert _table_row(section, "fifo")[1] == "21400"
    assert "6.7x sooner" in section
    assert "## Priority between tiers" not in render(_run_with({"bare": 1000.0}))
