"""Per-chunk cost of middlewares on a long event stream, in process, against the bare stream.

    python -m benchmarks.stream_cost                    # every registered middleware
    python -m benchmarks.stream_cost --only sse normalize --chunks 1000 --rounds 5
    python -m benchmarks.stream_cost --requests 2000    # also: per request on the JSON endpoint

A raw ASGI app streams ``--chunks`` OpenAI-shaped ``data:`` events; each configuration wraps it
and is driven directly (no server, no socket) with a ``send`` that only counts. The figure is
(wrapped time - bare time) / chunks, the median over interleaved rounds, so what remains is the
middleware's own work per chunk; the garbage collector is paused while a run is timed (as timeit
does). Other middlewares register a factory with :func:`register`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

ASGIApp = Any
Factory = Callable[[ASGIApp], ASGIApp]

FACTORIES: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    """Add a middleware to measure: ``factory(app)`` returns ``app`` wrapped in it."""
    if name in FACTORIES:
        raise ValueError(f"stream cost configuration {name!r} registered twice")
    FACTORIES[name] = factory


def _sse(app: ASGIApp) -> ASGIApp:
    from aimiddleware.sse import SSEMiddleware

    return SSEMiddleware(app)


def _normalize(app: ASGIApp) -> ASGIApp:
    from aimiddleware.normalize import NormalizeMiddleware

    return NormalizeMiddleware(app)


def _normalize_sse(app: ASGIApp) -> ASGIApp:
    return _normalize(_sse(app))


register("sse", _sse)
register("normalize", _normalize)
register("normalize+sse", _normalize_sse)

CHUNK = (
    b"data: "
    + json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "SmolLM2-135M-Instruct",
            "choices": [{"index": 0, "delta": {"content": " token"}, "finish_reason": None}],
        },
        separators=(",", ":"),
    ).encode()
    + b"\n\n"
)


def stream_app(chunks: int) -> ASGIApp:
    """A raw ASGI app that streams ``chunks`` events and ``[DONE]`` as fast as it can."""
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/event-stream")],
    }

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(start)
        for _ in range(chunks):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    return app


async def _once(app: ASGIApp, requests: int = 1) -> float:
    delivered = False
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"{}", "more_body": False}
        await never.wait()  # a client that stays connected
        return {"type": "http.disconnect"}

    sent = 0

    async def send(message: Any) -> None:
        nonlocal sent
        sent += 1

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"content-type", b"application/json")],
    }
    # like timeit: no collection inside the timed loop (which configuration happens to trigger
    # one is noise, not cost)
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        for _ in range(requests):
            delivered = False
            await app(dict(scope), receive, send)
        return time.perf_counter() - started
    finally:
        gc.enable()


async def measure(names: list[str], chunks: int, rounds: int, repeat: int) -> dict[str, float]:
    """Median microseconds per chunk each configuration adds to the bare stream."""
    bare = stream_app(chunks)
    apps = {"bare": bare, **{name: FACTORIES[name](stream_app(chunks)) for name in names}}
    for app in apps.values():  # warm up
        await _once(app)
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            best = min([await _once(app) for _ in range(repeat)])
            samples[name].append(best)
    base = samples["bare"]
    extra: dict[str, float] = {"bare": statistics.median(base) / chunks * 1e6}
    for name in names:
        extra[name] = statistics.median(
            (wrapped - plain) / chunks * 1e6
            for wrapped, plain in zip(samples[name], base, strict=True)
        )
    return extra


async def measure_json(
    names: list[str], requests: int, rounds: int, repeat: int
) -> dict[str, float]:
    """Median microseconds per request each configuration adds on the JSON endpoint."""
    from .apps import bare_app

    apps = {"bare": bare_app(), **{name: FACTORIES[name](bare_app()) for name in names}}
    for app in apps.values():
        await _once(app, 100)
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            samples[name].append(min([await _once(app, requests) for _ in range(repeat)]))
    base = samples["bare"]
    extra: dict[str, float] = {"bare": statistics.median(base) / requests * 1e6}
    for name in names:
        extra[name] = statistics.median(
            (wrapped - plain) / requests * 1e6
            for wrapped, plain in zip(samples[name], base, strict=True)
        )
    return extra


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stream_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", nargs="*", help="configuration names (default: all)")
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5, help="runs per round; the fastest counts")
    parser.add_argument(
        "--requests", type=int, default=0, help="also time this many JSON requests per round"
    )
    args = parser.parse_args(argv)
    names = args.only or list(FACTORIES)
    unknown = [n for n in names if n not in FACTORIES]
    if unknown:
        parser.error(f"unknown configurations {unknown}; known: {list(FACTORIES)}")
    extra = asyncio.run(measure(names, args.chunks, args.rounds, args.repeat))
    print(
        f"# {args.chunks} chunks of {len(CHUNK)} bytes, {args.rounds} interleaved rounds, "
        f"best of {args.repeat} per round"
    )
    print(f"{'configuration':24} {'us/chunk':>9}")
    print(f"{'bare stream':24} {extra['bare']:9.2f}  (total per chunk)")
    for name in names:
        print(f"{name:24} {extra[name]:+9.2f}  (added per chunk)")
    if args.requests:
        per_request = asyncio.run(measure_json(names, args.requests, args.rounds, args.repeat))
        print(
            f"\n# {args.requests} JSON requests per run, best of {args.repeat} per round, "
            "the benchmarks' endpoint, in process"
        )
        print(f"{'configuration':24} {'us/request':>10} {'ratio':>6}")
        bare = per_request["bare"]
        print(f"{'bare Starlette':24} {bare:10.2f} {1.0:6.3f}")
        for name in names:
            ratio = bare / (bare + per_request[name])
            print(f"{name:24} {per_request[name]:+10.2f} {ratio:6.3f}")


if __name__ == "__main__":
    main()
