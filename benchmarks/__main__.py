"""Measure benchmark configurations interleaved in one run, as ratios to ``bare``.

python -m benchmarks                      # all configurations, 3 rounds
python -m benchmarks --only bare peer:base-http-noop --rounds 5 --duration 5
python -m benchmarks --group stack peers --out results.json

The whole report (HTTP, scaling, streaming, plots, docs/benchmarks.md) is ``make bench``
(``python -m benchmarks.suite``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
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


@contextlib.contextmanager
def serving(cfg: Config, env: dict[str, str]) -> Iterator[int]:
    command = load.server_command(cfg.name)
    with serving_process(command, env={**os.environ, **env}, timeout=30, stop_timeout=10) as server:
        yield server.port


def _selected(cfg: Config, only: list[str] | None, groups: list[str] | None) -> bool:
    return (
        cfg.name == "bare"
        or (not only and not groups)
        or bool(only and cfg.name in only)
        or bool(groups and cfg.group in groups)
    )


def parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    parser.add_argument("--list", action="store_true", help="list the configurations and exit")
    return parser


def main(argv: list[str] | None = None) -> Path | None:
    args = parser().parse_args(argv)
    if args.list:
        for cfg in CONFIGS.values():
            print(f"{cfg.name:32} {cfg.group:12} {cfg.description}")
        for cfg, reason in UNAVAILABLE.values():
            print(f"{cfg.name:32} {cfg.group:12} {reason}")
        return None
    selected = [c for c in CONFIGS.values() if _selected(c, args.only, args.group)]
    chosen = [c for c in selected if load.unrunnable(c) is None]
    skipped = {
        cfg.name: (cfg, reason)
        for cfg, reason in UNAVAILABLE.values()
        if _selected(cfg, args.only, args.group)
    }
    skipped.update({c.name: (c, load.unrunnable(c) or "") for c in selected if c not in chosen})
    for name, (_, reason) in skipped.items():
        print(f"# {name}: {reason}", flush=True)
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
                connections = cfg.connections or args.connections
                with serving(cfg, env) as port:
                    load.run_load(cfg, port, args.warmup, connections)
                    result = load.run_load(cfg, port, args.duration, connections)
                samples[cfg.name].append(result)
                print(
                    f"round {round_no} {cfg.name:32} {result.requests_per_s:9.0f} req/s "
                    f"p50 {result.p50_ms:6.2f} ms p99 {result.p99_ms:6.2f} ms"
                    + (f"  errors {result.errors}" if result.errors else ""),
                    flush=True,
                )
    rows = summarize(samples)
    print_table(rows)
    out = args.out or RESULTS / f"http-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "kind": "http",
        "machine": describe(),
        "settings": {
            "generator": load.generator(),
            "connections": args.connections,
            "duration": args.duration,
            "warmup": args.warmup,
            "rounds": args.rounds,
        },
        "rows": rows,
        "unavailable": [
            {"name": n, "group": c.group, "description": c.description, "reason": r}
            for n, (c, r) in skipped.items()
        ],
    }
    out.write_text(json.dumps(document, indent=2))
    print(f"\nwritten {out}")
    return out


def _ratio_spread(values: list[float], base: list[float]) -> tuple[float, float, float]:
    # each round's figure over bare's figure in the same round: drift between rounds cancels
    ratios = [v / b for v, b in zip(values, base, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def summarize(samples: dict[str, list[load.Result]]) -> list[dict[str, object]]:
    """One row per configuration: medians over the rounds and ratios to ``bare``."""
    base = samples["bare"]
    rows: list[dict[str, object]] = []
    for name, results in samples.items():
        rps = [r.requests_per_s for r in results]
        p50 = [r.p50_ms for r in results]
        p99 = [r.p99_ms for r in results]
        ratio, low, high = _ratio_spread(rps, [r.requests_per_s for r in base])
        p50x = _ratio_spread(p50, [r.p50_ms for r in base])
        p99x = _ratio_spread(p99, [r.p99_ms for r in base])
        keys = results[0].percentiles.keys()
        rows.append(
            {
                "name": name,
                "group": CONFIGS[name].group,
                "description": CONFIGS[name].description,
                "connections": CONFIGS[name].connections,
                "rps": statistics.median(rps),
                "ratio": ratio,
                "ratio_min": low,
                "ratio_max": high,
                "p50_ms": statistics.median(p50),
                "p50_ratio": p50x[0],
                "p50_ratio_min": p50x[1],
                "p50_ratio_max": p50x[2],
                "p99_ms": statistics.median(p99),
                "p99_ratio": p99x[0],
                "p99_ratio_min": p99x[1],
                "p99_ratio_max": p99x[2],
                "errors": sum(r.errors for r in results),
                "percentiles_ms": {
                    k: statistics.median(r.percentiles[k] for r in results) for k in keys
                },
                "rounds": [
                    {"rps": r.requests_per_s, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms}
                    for r in results
                ],
            }
        )
    return rows


def print_table(rows: list[dict[str, object]]) -> None:
    print(
        f"\n{'configuration':32} {'req/s':>9} {'ratio':>6} {'(min-max)':>12} {'p50 ms':>7} "
        f"{'p50 x':>6} {'p99 ms':>7} {'p99 x':>6}"
    )
    for row in rows:
        spread = f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
        print(
            f"{row['name']!s:32} {row['rps']:9.0f} {row['ratio']:6.2f} {spread:>12} "
            f"{row['p50_ms']:7.2f} {row['p50_ratio']:6.2f} {row['p99_ms']:7.2f} "
            f"{row['p99_ratio']:6.2f}"
        )


if __name__ == "__main__":
    main()
