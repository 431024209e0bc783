"""Per-chunk cost of TracingMiddleware on a long SSE stream, measured in process.

python -m benchmarks.tracing_stream [--chunks 1000] [--repeat 30]

Drives a raw ASGI app that streams ``--chunks`` OpenAI chat chunks (plus the finish, usage and
``[DONE]`` events) to a ``send`` that drops them, bare and wrapped, and also with no chunks at
all. The per-chunk cost is the wrapped-minus-bare difference of the long stream less that of
the empty one, divided by the number of chunks: per-request work (span, metrics, body parse)
cancels out. Best of ``--repeat`` runs each, so that noise from other processes only inflates.

Instruction counts, which load does not move: ``--drive bare|traced`` only runs the stream
``--repeat`` times inside ``functools.reduce`` (after a warm-up), for callgrind::

    valgrind --tool=callgrind --toggle-collect=functools_reduce --callgrind-out-file=/dev/null \
        .venv/bin/python -m benchmarks.tracing_stream --drive traced --chunks 1000 --repeat 5

Per chunk: ((traced - bare at 1000 chunks) - (traced - bare at 0)) / 1000 / repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from .apps import REQUEST_BODY, sdk_providers

MODEL = "SmolLM2-135M-Instruct"


def _events(chunks: int) -> list[bytes]:
    def event(payload: Any) -> bytes:
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    out = [
        event(
            {
                **base,
                "choices": [{"index": 0, "delta": {"content": f" tok{i}"}, "finish_reason": None}],
            }
        )
        for i in range(chunks)
    ]
    out.append(event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    out.append(event({**base, "choices": [], "usage": usage}))
    out.append(b"data: [DONE]\n\n")
    return out


def _app(events: list[bytes]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for data in events:
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(REQUEST_BODY)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _once(app: Any) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": REQUEST_BODY, "more_body": False}

    async def send(message: Any) -> None:
        return None

    started = time.perf_counter()
    await app(_scope(), receive, send)
    return time.perf_counter() - started


async def _best(app: Any, repeat: int) -> float:
    for _ in range(3):
        await _once(app)  # warm up
    return min([await _once(app) for _ in range(repeat)])


async def main_async(chunks: int, repeat: int) -> None:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from aimiddleware.tracing import TracingMiddleware

    tracer_provider, meter_provider = sdk_providers()
    results = {}
    for n in (0, chunks):
        bare = _app(_events(n))
        traced = TracingMiddleware(
            bare, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        api_only = TracingMiddleware(
            bare, tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()
        )
        results[n] = (
            await _best(bare, repeat),
            await _best(traced, repeat),
            await _best(api_only, repeat),
        )
    tracer_provider.shutdown()
    (bare0, traced0, api0), (bare_n, traced_n, api_n) = results[0], results[chunks]
    per_chunk = ((traced_n - bare_n) - (traced0 - bare0)) / chunks
    print(f"stream of {chunks} chunks, best of {repeat}")
    print(f"  bare     {bare_n * 1e3:8.3f} ms   traced {traced_n * 1e3:8.3f} ms")
    print(f"  per request, SDK always-on (no chunks): +{(traced0 - bare0) * 1e6:.1f} us")
    print(f"  per request, API only, no SDK (no chunks): +{(api0 - bare0) * 1e6:.1f} us")
    api_per_chunk = ((api_n - bare_n) - (api0 - bare0)) / chunks
    print(f"  per chunk: {per_chunk * 1e6:.2f} us (API only: {api_per_chunk * 1e6:.2f} us)")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tracing_stream", description=__doc__
    )
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--drive", choices=["bare", "traced"], help="only run the stream (for callgrind)"
    )
    args = parser.parse_args()
    if args.drive:
        _drive(args.drive == "traced", args.chunks, args.repeat)
        return
    asyncio.run(main_async(args.chunks, args.repeat))


def _drive(traced: bool, chunks: int, repeat: int) -> None:
    import functools

    from aimiddleware.tracing import TracingMiddleware

    app = _app(_events(chunks))
    if traced:
        tracer_provider, meter_provider = sdk_providers()
        app = TracingMiddleware(app, tracer_provider=tracer_provider, meter_provider=meter_provider)
    loop = asyncio.new_event_loop()
    try:
        for _ in range(3):
            loop.run_until_complete(_once(app))  # warm up

        def run(_: object, __: object) -> None:
            for _ in range(repeat):
                loop.run_until_complete(_once(app))

        functools.reduce(run, range(1), None)
    finally:
        loop.close()


if __name__ == "__main__":
    main()
