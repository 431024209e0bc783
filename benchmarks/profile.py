"""Where a configuration's time goes, per component, in process.

    python -m benchmarks.profile stack:memory --requests 2000
    python -m benchmarks.profile stack:memory --out profile.json

Drives the configuration's app directly (no server, no socket) with its own request, headers
and, where it uses them, a fresh ``Idempotency-Key`` per request, under :mod:`cProfile`. Own
time is summed per component: each ``aimiddleware`` subpackage, each third-party package
(``opentelemetry``, ``starlette``, ...), the standard library and built-ins. The figures are
shares of the profiled time; cProfile's own overhead inflates many small calls, so read them as
where to look, not as microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import re
import time
import uuid
from pathlib import Path
from typing import Any

from .apps import Config
from .registry import CONFIGS

_AIMW = re.compile(r"/aimiddleware/(?:(\w+)/)?")
_SITE = re.compile(r"/(?:site|dist)-packages/([A-Za-z0-9_]+)")
_STDLIB = re.compile(r"/lib/python3\.\d+/([A-Za-z0-9_]+)")


def component(filename: str) -> str:
    """The component a profiled function belongs to, from its file name.

    >>> component("/x/src/aimiddleware/tracing/middleware.py")
    'aimiddleware.tracing'
    """
    if filename.startswith("~") or filename.startswith("{"):
        return "built-ins"
    found = _AIMW.search(filename)
    if found:
        sub = found.group(1)
        return f"aimiddleware.{sub}" if sub else "aimiddleware (shared)"
    found = _SITE.search(filename)
    if found:
        return found.group(1)
    found = _STDLIB.search(filename)
    if found:
        return f"stdlib {found.group(1).removesuffix('.py')}"
    return "benchmark app and driver" if "/benchmarks/" in filename else "other"


def _scope(cfg: Config) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in cfg.headers.items()]
    if cfg.fresh_keys:
        headers.append((b"idempotency-key", uuid.uuid4().hex.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": cfg.path,
        "raw_path": cfg.path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def _one(app: Any, cfg: Config, never: asyncio.Event) -> int | None:
    messages = [{"type": "http.request", "body": cfg.request_body, "more_body": False}]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await never.wait()  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(_scope(cfg), receive, send)
    return status[0] if status else None


async def drive(app: Any, cfg: Config, requests: int) -> None:
    """Send ``requests`` requests to ``app``; a non-2xx answer is an error in the benchmark."""
    never = asyncio.Event()
    for _ in range(requests):
        status = await _one(app, cfg, never)
        if status is None or not 200 <= status < 300:
            raise RuntimeError(f"{cfg.name} answered {status} in process")


def profile(cfg: Config, requests: int) -> dict[str, Any]:
    """Profile ``requests`` requests through ``cfg`` after a warm-up; shares per component."""
    app = cfg.factory()

    async def run() -> tuple[float, cProfile.Profile]:
        await drive(app, cfg, min(200, requests))
        # CPU time of this thread: on a shared machine wall time would charge whichever
        # function was running when the scheduler took the core away
        profiler = cProfile.Profile(time.thread_time)
        started = time.perf_counter()
        profiler.enable()
        await drive(app, cfg, requests)
        profiler.disable()
        return time.perf_counter() - started, profiler

    elapsed, profiler = asyncio.run(run())
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    by_component: dict[str, float] = {}
    functions = []
    for (filename, line, name), (_, calls, own, _, _) in stats.items():
        part = component(filename)
        by_component[part] = by_component.get(part, 0.0) + own
        functions.append((own, calls, part, f"{Path(filename).name}:{line}({name})"))
    total = sum(by_component.values()) or 1.0
    functions.sort(reverse=True)
    return {
        "name": cfg.name,
        "requests": requests,
        "us_per_request_profiled": elapsed / requests * 1e6,
        "components": [
            {"component": k, "share": v / total}
            for k, v in sorted(by_component.items(), key=lambda kv: -kv[1])
        ],
        "functions": [
            {"function": where, "component": part, "share": own / total, "calls": calls}
            for own, calls, part, where in functions[:15]
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "names", nargs="+", help="configuration names (python -m benchmarks --list)"
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in CONFIGS]
    if unknown:
        parser.error(f"not available here: {unknown} (python -m benchmarks --list)")
    results = []
    for name in args.names:
        result = profile(CONFIGS[name], args.requests)
        results.append(result)
        print(f"\n# {name}: {result['us_per_request_profiled']:.0f} us/request under the profiler")
        for entry in result["components"][:12]:
            print(f"{entry['component']:32} {entry['share']:6.1%}")
        print()
        for entry in result["functions"][:10]:
            print(f"{entry['share']:6.1%} {entry['calls']:8} {entry['function']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"kind": "profile", "profiles": results}, indent=2))
        print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
