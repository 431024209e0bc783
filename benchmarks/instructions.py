"""Instructions per request of each budgeted configuration and ``bare``, under callgrind.

    python -m benchmarks.instructions --requests 300 --out instructions.json
    python -m benchmarks.instructions --only bare sse:alone --requests 100

The configurations run under ``valgrind --tool=callgrind --toggle-collect=functools_reduce``,
driven by ``python -m benchmarks.inprocess --drive NAME...``, which sends each configuration's
requests inside one ``functools.reduce`` call: only those are collected (not the imports, the
apps' construction or their warm-up), and ``--dump-after=functools_reduce`` leaves one dump per
configuration. Python's imports under callgrind take tens of seconds of CPU, so the
configurations share a process (``--jobs`` processes, each with a share of them). Instruction
counts do not move with what else runs on the machine, so they judge a change where the
microseconds of :mod:`benchmarks.inprocess` wobble. ``added`` is the count per request minus
``bare``'s. Without valgrind the script says so and exits with status 3.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .budgets import budgeted
from .registry import CONFIGS, UNAVAILABLE

NO_VALGRIND = 3
_TOTALS = re.compile(r"^totals:\s*(\d+)", re.M)


def command(names: list[str], requests: int, dumps: Path) -> list[str]:
    """The callgrind command line driving ``names``, its dumps written into ``dumps``."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--toggle-collect=functools_reduce",
        "--dump-after=functools_reduce",
        f"--callgrind-out-file={dumps / 'callgrind.out'}",
        sys.executable,
        "-m",
        "benchmarks.inprocess",
        "--requests",
        str(requests),
        "--dumps",
        str(dumps),
        "--drive",
        *names,
    ]


def totals(dump: str) -> int:
    """The instructions a callgrind dump file collected.

    >>> totals("events: Ir\\nsummary: 123456\\ntotals: 123456\\n")
    123456
    """
    found = _TOTALS.search(dump)
    if not found:
        raise ValueError(f"no 'totals:' line in the callgrind dump: {dump[:300]!r}")
    return int(found.group(1))


def count(names: list[str], requests: int) -> list[dict[str, Any]]:
    """``names`` in one callgrind process: each one's instructions per request."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aimw-callgrind-") as tmp:
        dumps = Path(tmp)
        done = subprocess.run(
            command(names, requests, dumps), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"callgrind exited {done.returncode}: {done.stderr[-2000:]}")
        drives: dict[str, list[str]] = json.loads((dumps / "drives.json").read_text())
        rows = []
        for name in names:
            if len(drives[name]) != 1:
                # a functools.reduce inside the requests toggles collection off: counts would be
                # short, so say so rather than report them
                raise RuntimeError(f"{name}: {len(drives[name])} callgrind dumps, not one")
            total = totals((dumps / drives[name][0]).read_text())
            rows.append({"name": name, "instructions": total, "per_request": total / requests})
    seconds = round(time.monotonic() - started, 1)
    return [{**row, "process_seconds": seconds} for row in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", nargs="*", help="configuration names (bare is always included)")
    parser.add_argument("--requests", type=int, default=300, help="requests per configuration")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind processes at once")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts", file=sys.stderr)
        raise SystemExit(NO_VALGRIND)
    wanted = args.only or budgeted()
    for name in [n for n in wanted if n in UNAVAILABLE]:
        print(f"# {name}: {UNAVAILABLE[name][1]}", flush=True)
    names = ["bare", *[n for n in wanted if n != "bare" and n not in UNAVAILABLE]]
    unknown = [n for n in names if n not in CONFIGS or CONFIGS[n].needs]
    if unknown:
        parser.error(f"unknown or service-bound configurations {unknown}")
    # counts do not depend on the machine's load, so the processes may share the cores
    jobs = max(1, min(args.jobs, len(names)))
    shares = [names[i::jobs] for i in range(jobs)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        found = {r["name"]: r for share in pool.map(lambda n: count(n, args.requests), shares)
                 for r in share}  # fmt: skip
    rows = [found[name] for name in names]
    bare = found["bare"]["per_request"]
    print(f"# callgrind, {args.requests} requests per configuration, instructions per request")
    print(f"{'configuration':32} {'instr/req':>12} {'added':>12}")
    for row in rows:
        row["added"] = row["per_request"] - bare
        print(f"{row['name']:32} {row['per_request']:12,.0f} {row['added']:+12,.0f}")
    if args.out:
        settings = {"requests": args.requests, "processes": jobs}
        document = {"kind": "instructions", "settings": settings, "rows": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2))
        print(f"written {args.out}")


if __name__ == "__main__":
    main()
