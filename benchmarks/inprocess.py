"""CPU microseconds per request of each benchmark configuration, in process, against ``bare``.

    python -m benchmarks.inprocess                          # every in-process configuration
    python -m benchmarks.inprocess --only sse:alone normalize:alone --requests 2000 --rounds 7

Each configuration's raw ASGI app (its factory, named in :mod:`benchmarks.registry`) is driven
directly: no server, no socket, no load generator, so what other processes do on a shared
machine hardly moves the figures. A run sends ``--requests`` POSTs of the benchmarks' chat body
with the configuration's headers (a fresh ``Idempotency-Key`` per request where the HTTP run
uses a fresh-keys script) and counts the process CPU time it took (``time.process_time``: the
batch span processor's thread counts too). Configurations are interleaved with ``bare`` round
by round; the figure is the median over rounds of the fastest of ``--repeat`` runs, the spread
is the lowest and highest round, and the ratio is bare / configuration, as the HTTP harness
reports it. Configurations that need a service (Redis) are left out, and so are the series
(request body size, stream length: their requests are not the chat request driven here).
``--out`` writes the figures as JSON, as ``make bench`` does (the report judges them against
:mod:`benchmarks.budgets`).

Instruction counts, which a loaded machine does not move at all (``--drive`` runs the requests
inside ``functools.reduce`` so that only they are collected, after imports and a warm-up)::

    valgrind --tool=callgrind --toggle-collect=functools_reduce --callgrind-out-file=/dev/null \
        .venv/bin/python -m benchmarks.inprocess --drive tracing:api-only --requests 300

Several configurations in one process (imports under callgrind cost tens of seconds) are what
``python -m benchmarks.instructions`` runs: ``--drive A B --dumps DIR`` under
``--dump-after=functools_reduce``, one dump file per configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .apps import REQUEST_BODY, Config
from .registry import CONFIGS
from .rundata import SERIES_GROUPS

ASGIApp = Any

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/v1/chat/completions",
    "raw_path": b"/v1/chat/completions",
    "root_path": "",
    "query_string": b"",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
}
BASE_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(REQUEST_BODY)).encode()),
]


def _headers_for(cfg: Config) -> Callable[[], list[tuple[bytes, bytes]]]:
    fixed = BASE_HEADERS + [(k.lower().encode(), v.encode()) for k, v in cfg.headers.items()]
    if cfg.lua and "Idempotency-Key" in cfg.lua:
        counter = itertools.count()
        prefix = f"bench-{time.monotonic_ns()}-"

        def fresh() -> list[tuple[bytes, bytes]]:
            key = f"{prefix}{next(counter)}".encode()
            return [*fixed, (b"idempotency-key", key)]

        return fresh
    return lambda: fixed


async def _run(
    app: ASGIApp,
    headers: Callable[[], list[tuple[bytes, bytes]]],
    n: int,
    *,
    collect: bool = True,
) -> float:
    request = {"type": "http.request", "body": REQUEST_BODY, "more_body": False}
    status = 0

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    if collect:
        gc.collect()
    gc.disable()  # as timeit: which configuration happens to trigger a collection is noise
    try:
        started = time.process_time()
        for _ in range(n):
            await app({**SCOPE, "headers": headers(), "state": {}}, receive, send)
        elapsed = time.process_time() - started
    finally:
        gc.enable()
    if status != 200:
        raise RuntimeError(f"the configuration answered {status}, not 200")
    return elapsed


async def measure(
    names: list[str], requests: int, rounds: int, repeat: int
) -> dict[str, list[float]]:
    """Per configuration: the best-of-``repeat`` microseconds per request of each round."""
    apps = {name: CONFIGS[name].factory() for name in names}
    heads = {name: _headers_for(CONFIGS[name]) for name in names}
    for name, app in apps.items():  # warm up: caches, lazy imports, the JIT-free interpreter
        await _run(app, heads[name], max(50, requests // 10))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name, app in apps.items():
            best = min([await _run(app, heads[name], requests) for _ in range(repeat)])
            samples[name].append(best / requests * 1e6)
    return samples


def _batch(loop: Any, app: ASGIApp, headers: Any, requests: int, _: float, __: int) -> float:
    return float(loop.run_until_complete(_run(app, headers, requests, collect=False)))


def _drive(names: list[str], requests: int, dumps: Path | None = None) -> None:
    """Send ``requests`` requests through each configuration in turn, each batch inside one
    ``functools.reduce`` call (what callgrind's ``--toggle-collect`` and ``--dump-after`` key
    on). With ``dumps``, callgrind's output directory, ``drives.json`` there names the dump
    files each configuration's batch left (:mod:`benchmarks.instructions` reads them)."""
    import functools

    made: dict[str, list[str]] = {}
    loop = asyncio.new_event_loop()
    try:
        for name in names:
            cfg = CONFIGS[name]
            app, headers = cfg.factory(), _headers_for(cfg)
            loop.run_until_complete(_run(app, headers, 50, collect=False))
            before = set(os.listdir(dumps)) if dumps else set()
            functools.reduce(functools.partial(_batch, loop, app, headers, requests), range(1), 0.0)
            if dumps:
                made[name] = sorted(set(os.listdir(dumps)) - before)
    finally:
        loop.close()
    if dumps:
        (dumps / "drives.json").write_text(json.dumps(made))


def _profile(name: str, requests: int) -> None:
    import cProfile
    import pstats

    cfg = CONFIGS[name]
    app, headers = cfg.factory(), _headers_for(cfg)

    async def run() -> None:
        await _run(app, headers, max(50, requests // 10))
        profiler = cProfile.Profile()
        profiler.enable()
        await _run(app, headers, requests)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)

    asyncio.run(run())


def local_names() -> list[str]:
    """The configurations measured by default: no service, no peer, no series."""
    return [
        c.name
        for c in CONFIGS.values()
        if not c.needs and not c.name.startswith("peer:") and c.group not in SERIES_GROUPS
    ]


def summarize(samples: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One row per configuration: median us/request over rounds, the lowest and highest
    round, what it adds over ``bare`` and bare's ratio to it."""
    bare = statistics.median(samples["bare"])
    rows = []
    for name, values in samples.items():
        med = statistics.median(values)
        rows.append(
            {
                "name": name,
                "group": CONFIGS[name].group,
                "us": med,
                "us_min": min(values),
                "us_max": max(values),
                "added": med - bare,
                "ratio": bare / med,
                "rounds": values,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.inprocess",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", nargs="*", help="configuration names (bare is always included)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="runs per round; the fastest counts")
    parser.add_argument(
        "--profile", metavar="NAME", help="profile one configuration with cProfile instead"
    )
    parser.add_argument(
        "--drive",
        nargs="+",
        metavar="NAME",
        help="only send --requests requests through each NAME in turn (callgrind)",
    )
    parser.add_argument("--dumps", type=Path, help="with --drive: callgrind's output directory")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.drive:
        _drive(args.drive, args.requests, args.dumps)
        return
    if args.profile:
        _profile(args.profile, args.requests)
        return
    local = local_names()
    names = ["bare", *[n for n in (args.only or local) if n != "bare"]]
    unknown = [n for n in names if n not in CONFIGS or CONFIGS[n].needs]
    if unknown:
        parser.error(f"unknown or service-bound configurations {unknown}; known: {local}")
    samples = asyncio.run(measure(names, args.requests, args.rounds, args.repeat))
    rows = summarize(samples)
    print(
        f"# {args.requests} requests per run, {args.rounds} interleaved rounds, "
        f"best of {args.repeat} per round, process CPU time"
    )
    print(f"{'configuration':32} {'us/req':>8} {'min':>8} {'max':>8} {'added':>8} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['name']:32} {r['us']:8.1f} {r['us_min']:8.1f} {r['us_max']:8.1f} "
            f"{r['added']:+8.1f} {r['ratio']:6.3f}"
        )
    if args.out:
        from .machine import describe

        settings = {"requests": args.requests, "rounds": args.rounds, "repeat": args.repeat}
        document = {"kind": "inprocess", "machine": describe(), "settings": settings, "rows": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2))
        print(f"written {args.out}")


if __name__ == "__main__":
    main()
