"""The performance report in one command: every part, one session, then docs/benchmarks.md.

make bench                       # python -m benchmarks.suite
make bench ARGS=--quick          # a short run (fewer, shorter rounds; fewer tokens)
python -m benchmarks.suite --parts http scaling --rounds 3 --duration 3

Parts, each a module that can also run alone, each writing its JSON into one run directory
(benchmarks/results/run-<time>/):

  inprocess   python -m benchmarks.inprocess  CPU us per request of every in-process
              configuration, interleaved with bare: judged against benchmarks/budgets.py
  instructions python -m benchmarks.instructions  callgrind instructions per request of each
              budgeted configuration and bare (skipped, and said so, without valgrind)
  roundtrips  python -m benchmarks.roundtrips  Redis round trips per request, real redis-server
  http        python -m benchmarks           every configuration interleaved, ratios to bare
  scaling     python -m benchmarks.scaling   requests/s with 1, 2 and 4 uvicorn workers
  streaming   python -m benchmarks.streaming reference app vs llama-cpp-python, same model
  stream-cost python -m benchmarks.stream_cost_stack  per-chunk and per-request cost in
              process (benchmarks/stream_cost.py with the full stack added), where it exists
  profile     python -m benchmarks.profile   where the stack's and the peer stack's time goes,
              and each budgeted configuration's (for those that miss their budget)
  priority    python -m benchmarks.priority  a person's time to first token behind 8 agent
              streams in the reference app, with and without the tiers' priority

A part that fails is recorded as failed in run.json and the others still run; the report says
which parts are missing. Then python -m benchmarks.report renders the run.

The full plan takes about 20 minutes on a quiet 2-core machine, estimated part by part:
http about 8 (46 configurations x 3 interleaved rounds of 2 s after 0.5 s of warm-up, about
1 s to start each server), streaming 3 to 5 (the model loads, 5 rounds of 128 tokens, 4
concurrent streams), scaling about 1.5, inprocess about 1.5 (2000 requests x 3 x 5 rounds),
instructions about 1 (a minute of CPU under callgrind, imports included, in two processes),
stream-cost and profile about 1 each, roundtrips under 1, priority about 2 (3 rounds, each
8 agent streams of 64 tokens behind one model instance, with and without priority).
run.json records the seconds each part took and the report prints them under "Machine".
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .budgets import budgeted
from .report import ROOT, write
from .rundata import PROFILED

RESULTS = Path(__file__).parent / "results"
PARTS = (
    "inprocess",
    "instructions",
    "roundtrips",
    "http",
    "scaling",
    "streaming",
    "stream-cost",
    "profile",
    "priority",
)


@dataclass(frozen=True)
class Plan:
    """How long each part measures: the full run or ``--quick``."""

    rounds: int
    duration: float
    warmup: float
    scaling_rounds: int
    stream_rounds: int
    max_tokens: int
    concurrency: bool
    cost_rounds: int
    cost_requests: int
    inprocess_requests: int
    inprocess_rounds: int
    instruction_requests: int
    roundtrip_requests: int
    priority_rounds: int
    agent_tokens: int


# the full run fits in about 20 minutes (see above): the HTTP part, the largest, is sized so
FULL = Plan(3, 2.0, 0.5, 3, 5, 128, True, 5, 2000, 2000, 5, 300, 200, 3, 64)
QUICK = Plan(2, 1.0, 0.5, 1, 2, 48, False, 3, 300, 300, 2, 50, 30, 1, 24)


def commands(parts: list[str], plan: Plan, run_dir: Path) -> dict[str, list[str]]:
    """The command line of each part, writing into ``run_dir``."""
    py = [sys.executable, "-m"]
    timing = ["--rounds", str(plan.rounds), "--duration", str(plan.duration)]
    out: dict[str, list[str]] = {}
    if "inprocess" in parts:
        out["inprocess"] = [*py, "benchmarks.inprocess", "--requests",
                            str(plan.inprocess_requests), "--rounds", str(plan.inprocess_rounds),
                            "--out", str(run_dir / "inprocess.json")]  # fmt: skip
    if "instructions" in parts:
        out["instructions"] = [*py, "benchmarks.instructions", "--requests",
                               str(plan.instruction_requests),
                               "--out", str(run_dir / "instructions.json")]  # fmt: skip
    if "roundtrips" in parts:
        out["roundtrips"] = [*py, "benchmarks.roundtrips", "--requests",
                             str(plan.roundtrip_requests),
                             "--out", str(run_dir / "roundtrips.json")]  # fmt: skip
    if "http" in parts:
        out["http"] = [*py, "benchmarks", *timing, "--warmup", str(plan.warmup),
                       "--out", str(run_dir / "http.json")]  # fmt: skip
    if "scaling" in parts:
        out["scaling"] = [*py, "benchmarks.scaling", "--rounds", str(plan.scaling_rounds),
                          "--duration", str(plan.duration), "--out",
                          str(run_dir / "scaling.json")]  # fmt: skip
    if "streaming" in parts:
        out["streaming"] = [*py, "benchmarks.streaming", "--rounds", str(plan.stream_rounds),
                            "--max-tokens", str(plan.max_tokens),
                            "--out", str(run_dir / "streaming.json")]  # fmt: skip
        if not plan.concurrency:
            out["streaming"].append("--skip-concurrency")
    if "stream-cost" in parts:
        cost = ["--rounds", str(plan.cost_rounds), "--requests", str(plan.cost_requests)]
        out["stream-cost"] = [*py, "benchmarks.stream_cost_stack", *cost]
    if "profile" in parts:
        from .registry import CONFIGS

        # the budgeted too: the report says where a missed budget's time goes
        names = [n for n in dict.fromkeys([*PROFILED, *budgeted()]) if n in CONFIGS]
        requests = ["--requests", str(plan.cost_requests)]
        out["profile"] = [*py, "benchmarks.profile", *names, *requests,
                          "--out", str(run_dir / "profile.json")]  # fmt: skip
    if "priority" in parts:
        out["priority"] = [*py, "benchmarks.priority", "--rounds", str(plan.priority_rounds),
                           "--agent-tokens", str(plan.agent_tokens),
                           "--out", str(run_dir / "priority.json")]  # fmt: skip
    return out


def _available(part: str) -> str | None:
    if part == "instructions" and shutil.which("valgrind") is None:
        return "valgrind is not installed (apt-get install valgrind), no instruction counts"
    if part == "roundtrips":
        from .apps import missing
        from .budgets import ROUND_TRIPS
        from .registry import CONFIGS, UNAVAILABLE

        reason = missing(("redis.asyncio:Redis",))
        if reason:
            return f"the redis package: {reason}"
        if not any(n in CONFIGS for n in ROUND_TRIPS):
            return "; ".join(f"{n}: {UNAVAILABLE[n][1]}" for n in ROUND_TRIPS if n in UNAVAILABLE)
    if part == "stream-cost" and importlib.util.find_spec("benchmarks.stream_cost") is None:
        return "benchmarks/stream_cost.py is not in this tree yet"
    if part == "profile":
        from .registry import CONFIGS

        if not any(n in CONFIGS for n in PROFILED):
            return f"none of {', '.join(PROFILED)} can be built here"
    return None


def run_part(part: str, command: list[str], run_dir: Path) -> str:
    """Run one part with its output on the terminal; ``"ok"`` or why it did not finish."""
    print(f"\n== {part}: {' '.join(command[1:])}", flush=True)
    if part == "stream-cost":
        # its figures are its text output: kept verbatim for the report
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        print(done.stdout, end="", flush=True)
        print(done.stderr, end="", file=sys.stderr, flush=True)
        if done.returncode == 0:
            (run_dir / "stream_cost.txt").write_text(done.stdout)
    else:
        done = subprocess.run(command, cwd=ROOT, check=False)  # type: ignore[assignment]
    return "ok" if done.returncode == 0 else f"failed with exit status {done.returncode}"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--parts", nargs="*", choices=PARTS, default=list(PARTS))
    parser.add_argument("--rounds", type=int, help="HTTP rounds (overrides the plan)")
    parser.add_argument("--duration", type=float, help="seconds per HTTP measurement")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md as it is")
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    if args.rounds or args.duration:
        plan = replace(
            plan,
            rounds=args.rounds or plan.rounds,
            duration=args.duration or plan.duration,
            scaling_rounds=min(plan.scaling_rounds, args.rounds or plan.scaling_rounds),
        )
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    run_dir = RESULTS / f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    run_dir.mkdir(parents=True)
    status: dict[str, str] = {}
    for part in args.parts:
        reason = _available(part)
        if reason:
            status[part] = f"skipped: {reason}"
            print(f"\n== {part}: skipped, {reason}", flush=True)
    seconds: dict[str, float] = {}
    for part, command in commands(args.parts, plan, run_dir).items():
        if part not in status:
            began = time.monotonic()
            status[part] = run_part(part, command, run_dir)
            seconds[part] = round(time.monotonic() - began, 1)
    given = sys.argv[1:] if argv is None else argv
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "started": started,
                "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "command": " ".join(["python -m benchmarks.suite", *given]),
                "directory": run_dir.relative_to(ROOT).as_posix(),
                "plan": plan.__dict__,
                "parts": status,
                "seconds": seconds,
            },
            indent=2,
        )
    )
    out = write(run_dir, docs=args.docs, readme=None if args.no_readme else ROOT / "README.md")
    print(f"\n{json.dumps(status, indent=2)}\nwritten {out}", flush=True)
    return out


if __name__ == "__main__":
    main()
