"""What each MCP guard costs per request, in-process (no sockets, no server): microseconds.

python -m benchmarks.mcp_overhead [--requests N]

The same allowed ``tools/call`` as the HTTP configurations (benchmarks/mcp_guards.py) is driven
through raw ASGI messages into a no-op app, with and without each guard; the figures are the
median of five passes, so the load of a shared machine shows up less than in req/s ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from aimiddleware import set_principal

from .mcp_guards import AGENT, ORIGIN, TOOL_CALL, _origin, _scopes

BODY = TOOL_CALL.encode()
HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"content-type", b"application/json"),
    (b"accept", b"application/json, text/event-stream"),
    (b"origin", ORIGIN.encode()),
]


async def noop(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def drive(app: Any, requests: int) -> float:
    """Seconds per request through ``app``."""

    async def send(message: Any) -> None:
        return None

    started = time.perf_counter()
    for _ in range(requests):
        scope: dict[str, Any] = {
            "type": "http",
            "method": "POST",
            "path": "/mcp",
            "headers": HEADERS,
        }
        set_principal(scope, AGENT)
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}

        await app(scope, receive, send)
    return (time.perf_counter() - started) / requests


async def main(requests: int) -> None:
    apps = {
        "no-op app": noop,
        "MCPOriginMiddleware": _origin(noop),
        "MCPScopeMiddleware": _scopes(noop),
        "both guards": _origin(_scopes(noop)),
    }
    results: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(5):  # interleaved passes
        for name, app in apps.items():
            results[name].append(await drive(app, requests))
    base = statistics.median(results["no-op app"])
    print(f"{'configuration':24} {'us/request':>11} {'added us':>9}")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"{name:24} {median * 1e6:11.2f} {(median - base) * 1e6:9.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mcp_overhead")
    parser.add_argument("--requests", type=int, default=20000)
    asyncio.run(main(parser.parse_args().requests))
