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
reports it. Configurations that need a service (Redis) are left out.

Instruction counts, which a loaded machine does not move at all (``--drive`` runs the requests
inside ``functools.reduce`` so that only they are collected, after imports and a warm-up)::

    valgrind --tool=callgrind --toggle-collect=functools_reduce --callgrind-out-file=/dev/null \
        .venv/bin/python -m benchmarks.inprocess --drive tracing:api-only --requests 300
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

from .apps import REQUEST_BODY, Config
from .registry import CONFIGS

ASGIApp = Any

_SCOPE: dict[str, Any] = {
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
_BASE_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(REQUEST_BODY)).encode()),
]


def _headers_for(cfg: Config) -> Callable[[], list[tuple[bytes, bytes]]]:
    fixed = _BASE_HEADERS + [(k.lower().encode(), v.encode()) for k, v in cfg.headers.items()]
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
            await app({**_SCOPE, "headers": headers(), "state": {}}, receive, send)
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


def _drive(name: str, requests: int) -> None:
    import functools

    cfg = CONFIGS[name]
    app, headers = cfg.factory(), _headers_for(cfg)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_run(app, headers, 50, collect=False))
        functools.reduce(
            lambda _, __: loop.run_until_complete(_run(app, headers, requests, collect=False)),
            range(1),
            0.0,
        )
    finally:
        loop.close()


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
        "--drive", metavar="NAME", help="only send --requests requests through NAME (callgrind)"
    )
    args = parser.parse_args(argv)
    if args.drive:
        _drive(args.drive, args.requests)
        return
    if args.profile:
        _profile(args.profile, args.requests)
        return
    local = [c.name for c in CONFIGS.values() if not c.needs and not c.name.startswith("peer:")]
    names = ["bare", *[n for n in (args.only or local) if n != "bare"]]
    unknown = [n for n in names if n not in CONFIGS or CONFIGS[n].needs]
    if unknown:
        parser.error(f"unknown or service-bound configurations {unknown}; known: {local}")
    samples = asyncio.run(measure(names, args.requests, args.rounds, args.repeat))
    bare = statistics.median(samples["bare"])
    print(
        f"# {args.requests} requests per run, {args.rounds} interleaved rounds, "
        f"best of {args.repeat} per round, process CPU time"
    )
    print(f"{'configuration':32} {'us/req':>8} {'min':>8} {'max':>8} {'added':>8} {'ratio':>6}")
    for name in names:
        med = statistics.median(samples[name])
        lo, hi = min(samples[name]), max(samples[name])
        print(f"{name:32} {med:8.1f} {lo:8.1f} {hi:8.1f} {med - bare:+8.1f} {bare / med:6.3f}")


if __name__ == "__main__":
    main()
