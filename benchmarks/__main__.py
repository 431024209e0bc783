"""Measure every benchmark configuration interleaved in one run, as ratios to ``bare``.

python -m benchmarks                      # all configurations, 3 rounds
python -m benchmarks --only bare peer:base-http-noop --rounds 5 --duration 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.servers import free_port, running_redis, wait_for_port

from . import load
from .apps import CONFIGS, Config

RESULTS = Path(__file__).parent / "results"


@contextlib.contextmanager
def serving(cfg: Config, env: dict[str, str]) -> Iterator[int]:
    import os

    port = free_port()
    process = subprocess.Popen(load.server_command(cfg.name, port), env={**os.environ, **env})
    try:
        wait_for_port(port, timeout=30)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", nargs="*", help="configuration names (bare is always included)")
    parser.add_argument("--group", nargs="*", help="configuration groups to include")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--list", action="store_true", help="list the configurations and exit")
    args = parser.parse_args(argv)

    if args.list:
        for cfg in CONFIGS.values():
            print(f"{cfg.name:32} {cfg.group:12} {cfg.description}")
        return
    chosen = [
        c
        for c in CONFIGS.values()
        if c.name == "bare"
        or (not args.only and not args.group)
        or (args.only and c.name in args.only)
        or (args.group and c.group in args.group)
    ]
    env: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if any("redis" in c.needs for c in chosen):
            env["AIMW_BENCH_REDIS_URL"] = stack.enter_context(running_redis()).url
        samples: dict[str, list[load.Result]] = {c.name: [] for c in chosen}
        print(
            f"# load generator: {load.generator()}, {args.connections} connections, "
            f"{args.duration}s x {args.rounds} rounds, interleaved",
            flush=True,
        )
        for round_no in range(1, args.rounds + 1):
            for cfg in chosen:
                with serving(cfg, env) as port:
                    load.run_load(cfg, port, args.warmup, args.connections)
                    result = load.run_load(cfg, port, args.duration, args.connections)
                samples[cfg.name].append(result)
                print(
                    f"round {round_no} {cfg.name:32} {result.requests_per_s:9.0f} req/s "
                    f"p50 {result.p50_ms:6.2f} ms p99 {result.p99_ms:6.2f} ms"
                    + (f"  errors {result.errors}" if result.errors else ""),
                    flush=True,
                )
    report(samples, args)


def _ratio_spread(values: list[float], base: list[float]) -> tuple[float, float, float]:
    ratios = [v / b for v, b in zip(values, base, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def report(samples: dict[str, list[load.Result]], args: argparse.Namespace) -> None:
    base = samples["bare"]
    rows = []
    print()
    print(
        f"{'configuration':32} {'req/s':>9} {'ratio':>6} {'(min-max)':>12} {'p50 ms':>7} "
        f"{'p50 x':>6} {'p99 ms':>7} {'p99 x':>6}"
    )
    for name, results in samples.items():
        rps = [r.requests_per_s for r in results]
        p50 = [r.p50_ms for r in results]
        p99 = [r.p99_ms for r in results]
        ratio, low, high = _ratio_spread(rps, [r.requests_per_s for r in base])
        p50x = _ratio_spread(p50, [r.p50_ms for r in base])[0]
        p99x = _ratio_spread(p99, [r.p99_ms for r in base])[0]
        row = {
            "name": name,
            "group": CONFIGS[name].group,
            "rps": statistics.median(rps),
            "ratio": ratio,
            "ratio_min": low,
            "ratio_max": high,
            "p50_ms": statistics.median(p50),
            "p50_ratio": p50x,
            "p99_ms": statistics.median(p99),
            "p99_ratio": p99x,
            "errors": sum(r.errors for r in results),
        }
        rows.append(row)
        print(
            f"{name:32} {row['rps']:9.0f} {ratio:6.2f} {f'({low:.2f}-{high:.2f})':>12} "
            f"{row['p50_ms']:7.2f} {p50x:6.2f} {row['p99_ms']:7.2f} {p99x:6.2f}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"http-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                    "cpus": __import__("os").cpu_count(),
                },
                "settings": {
                    "generator": load.generator(),
                    "connections": args.connections,
                    "duration": args.duration,
                    "rounds": args.rounds,
                },
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nwritten {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    main()
