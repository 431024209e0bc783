"""Redis round trips per request of the configurations on Redis, against a real redis-server.

    python -m benchmarks.roundtrips --requests 200 --out roundtrips.json

Starts its own ``redis-server`` (as the HTTP part does, :func:`testkit.servers.running_redis`),
then drives each configuration's app in process (:mod:`benchmarks.inprocess`) and counts the
request/response exchanges on the client's connections: every write of a command, a pipeline
or a script call to the socket, each being answered before the caller goes on. A pipeline or a
script is one round trip, however many commands it carries. The server's own count of the
commands it ran (``INFO commandstats``, commands run by scripts included) is given beside.
Connection set-up and a warm-up are left out; work a request leaves to run after its response
(a record completed in the background) is waited for and counted with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .budgets import ROUND_TRIPS
from .inprocess import _headers_for, _run
from .registry import CONFIGS, UNAVAILABLE

# redis-cli's own calls, which the server counts too
_OWN = {"info", "command", "hello", "client"}
_STAT = re.compile(r"^cmdstat_([^:]+):calls=(\d+)", re.M)


class Exchanges:
    """Counts the commands written to Redis connections, one per round trip."""

    def __init__(self) -> None:
        self.count = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Wrap ``send_packed_command`` of redis.asyncio's connections while inside."""
        from redis.asyncio.connection import Connection

        owner = next(c for c in Connection.__mro__ if "send_packed_command" in vars(c))
        original = vars(owner)["send_packed_command"]
        exchanges = self

        async def send_packed_command(conn: Any, command: Any, *args: Any, **kw: Any) -> Any:
            exchanges.count += 1
            return await original(conn, command, *args, **kw)

        setattr(owner, "send_packed_command", send_packed_command)  # noqa: B010 (patched: typed)
        try:
            yield
        finally:
            setattr(owner, "send_packed_command", original)  # noqa: B010


def commands_run(info: str) -> int:
    """Commands the server ran, from ``INFO commandstats``, without redis-cli's own.

    >>> commands_run("cmdstat_evalsha:calls=3,usec=9\\ncmdstat_info:calls=2,usec=1\\n")
    3
    """
    return sum(int(n) for name, n in _STAT.findall(info) if name.split("|")[0] not in _OWN)


async def _settle(before: set[asyncio.Task[Any]]) -> None:
    """Wait for the tasks requests left running (a record written after the response)."""
    for _ in range(100):
        left = asyncio.all_tasks() - before - {asyncio.current_task()}
        if not left:
            return
        await asyncio.wait(left, timeout=0.05)


async def _close(app: Any) -> None:
    """Start and stop the app's lifespan: the middlewares close their store clients."""
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        pass

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)


async def _measure(name: str, requests: int, server: Any, exchanges: Exchanges) -> dict[str, Any]:
    cfg = CONFIGS[name]
    app, headers = cfg.factory(), _headers_for(cfg)
    before = asyncio.all_tasks()
    await _run(app, headers, 20)  # connections opened, scripts loaded, the replayed key stored
    await _settle(before)
    before_exchanges, before_commands = (
        exchanges.count,
        commands_run(server.cli("info", "commandstats")),
    )
    await _run(app, headers, requests)
    await _settle(before)
    round_trips = (exchanges.count - before_exchanges) / requests
    commands = (commands_run(server.cli("info", "commandstats")) - before_commands) / requests
    await _close(app)
    what, bound = ROUND_TRIPS.get(name, ("", None))
    return {
        "name": name,
        "requests": requests,
        "round_trips": round_trips,
        "commands": commands,
        "bound": bound,
        "what": what,
    }


async def measure(names: list[str], requests: int, server: Any) -> list[dict[str, Any]]:
    exchanges = Exchanges()
    with exchanges.counting():
        return [await _measure(name, requests, server, exchanges) for name in names]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.roundtrips",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", nargs="*", help="configuration names (default: the budgeted)")
    parser.add_argument("--requests", type=int, default=200, help="requests per configuration")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    for name in [n for n in args.only or ROUND_TRIPS if n in UNAVAILABLE]:
        print(f"# {name}: {UNAVAILABLE[name][1]}", flush=True)
    names = [n for n in args.only or ROUND_TRIPS if n not in UNAVAILABLE]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown or unavailable configurations {unknown}")
    from testkit.servers import running_redis

    with running_redis() as server:
        os.environ["AIMW_BENCH_REDIS_URL"] = server.url
        rows = asyncio.run(measure(names, args.requests, server))
    print(f"# {args.requests} requests per configuration, a real redis-server")
    print(f"{'configuration':28} {'round trips':>12} {'bound':>6} {'commands':>9}")
    for r in rows:
        bound = "-" if r["bound"] is None else f"<= {r['bound']}"
        print(f"{r['name']:28} {r['round_trips']:12.2f} {bound:>6} {r['commands']:9.2f}")
    if args.out:
        document = {"kind": "roundtrips", "settings": {"requests": args.requests}, "rows": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2))
        print(f"written {args.out}")


if __name__ == "__main__":
    main()
