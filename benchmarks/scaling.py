"""Requests/s against the number of uvicorn worker processes, interleaved in one run.

python -m benchmarks.scaling --workers 1 2 4 --rounds 3 --duration 5

Each configuration is served by ``uvicorn benchmarks.serve:factory --factory --workers N`` (every
worker builds its own app, as in production); the full stack runs on Redis so that the workers
share their idempotency records and limits. The load generator is the same as for the HTTP
figures; with fewer cores than workers plus the generator, the curve flattens where the machine
runs out of cores, and the report states the core count next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from testkit.processes import serving_process
from testkit.servers import running_redis

from . import load
from .apps import Config
from .machine import describe
from .registry import CONFIGS, UNAVAILABLE

RESULTS = Path(__file__).parent / "results"
DEFAULT_CONFIGS = ("bare", "stack:redis")


def uvicorn_command(workers: int) -> list[str]:
    """uvicorn with ``workers`` processes; ``testkit.processes`` adds the ``--fd`` of its socket."""
    return [
        sys.executable,
        "-m",
        "testkit.serve",
        "benchmarks.serve:factory",
        "--factory",
        "--workers",
        str(workers),
    ]


@contextlib.contextmanager
def serving(cfg: Config, workers: int, env: dict[str, str]) -> Iterator[int]:
    with serving_process(
        uvicorn_command(workers),
        env={**os.environ, **env, "AIMW_BENCH_CONFIG": cfg.name},
        stop_timeout=20,
    ) as server:
        yield server.port


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--configs", nargs="*", default=list(DEFAULT_CONFIGS))
    parser.add_argument("--workers", nargs="*", type=int, default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0, help="also covers worker start-up")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    known = [CONFIGS[n] for n in args.configs if n in CONFIGS]
    chosen = [c for c in known if load.unrunnable(c) is None]
    unavailable = [
        {"name": n, "group": UNAVAILABLE[n][0].group, "reason": UNAVAILABLE[n][1]}
        for n in args.configs
        if n in UNAVAILABLE
    ] + [
        {"name": c.name, "group": c.group, "reason": load.unrunnable(c) or ""}
        for c in known
        if c not in chosen
    ]
    for entry in unavailable:
        print(f"# {entry['name']}: {entry['reason']}", flush=True)
    samples: dict[tuple[str, int], list[load.Result]] = {
        (c.name, w): [] for c in chosen for w in args.workers
    }
    env: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if any("redis" in c.needs for c in chosen):
            env["AIMW_BENCH_REDIS_URL"] = stack.enter_context(running_redis()).url
        for round_no in range(1, args.rounds + 1):
            for (name, workers), results in samples.items():
                with serving(CONFIGS[name], workers, env) as port:
                    load.run_load(CONFIGS[name], port, args.warmup, args.connections)
                    result = load.run_load(CONFIGS[name], port, args.duration, args.connections)
                results.append(result)
                print(
                    f"round {round_no} {name:24} workers {workers}  "
                    f"{result.requests_per_s:9.0f} req/s  p50 {result.p50_ms:6.2f} ms"
                    + (f"  errors {result.errors}" if result.errors else ""),
                    flush=True,
                )
    rows = [
        {
            "name": name,
            "workers": workers,
            "rps": statistics.median(r.requests_per_s for r in results),
            "rps_min": min(r.requests_per_s for r in results),
            "rps_max": max(r.requests_per_s for r in results),
            "p50_ms": statistics.median(r.p50_ms for r in results),
            "p99_ms": statistics.median(r.p99_ms for r in results),
            "errors": sum(r.errors for r in results),
        }
        for (name, workers), results in samples.items()
    ]
    out = args.out or RESULTS / f"scaling-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "kind": "scaling",
                "machine": describe(),
                "settings": {
                    "generator": load.generator(),
                    "connections": args.connections,
                    "duration": args.duration,
                    "rounds": args.rounds,
                    "workers": args.workers,
                },
                "rows": rows,
                "unavailable": unavailable,
            },
            indent=2,
        )
    )
    print(f"written {out}")
    return out


if __name__ == "__main__":
    main()
