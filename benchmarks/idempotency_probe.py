"""Idempotency: store round trips per request, and time to first token with and without it.

python -m benchmarks.idempotency_probe round-trips     # counting Store proxy, real redis-server
python -m benchmarks.idempotency_probe ttft --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator

from .apps import REQUEST_BODY, ASGIApp

# -- store round trips -----------------------------------------------------------------------


async def _round_trips() -> None:
    import httpx

    from aimiddleware.idempotency import IdempotencyMiddleware
    from aimiddleware.stores import store_from_url
    from testkit.openai_app import PATH, Counter, chat_app
    from testkit.servers import running_redis
    from testkit.stores import CountingStore

    with running_redis() as server:
        async with store_from_url(server.url) as redis:
            counting = CountingStore(redis)
            # an endpoint that streams when the body asks for it
            app = IdempotencyMiddleware(chat_app(Counter()), store=counting, anonymous="shared")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                plain = {"model": "m", "messages": []}
                for label, body in (
                    ("non-streamed", plain),
                    ("streamed (5 tokens + [DONE])", {**plain, "stream": True}),
                ):
                    key = f"rt-{uuid.uuid4().hex}"
                    for attempt in ("fresh", "replay"):
                        counting.calls.clear()
                        response = await client.post(
                            PATH, json=body, headers={"Idempotency-Key": key}
                        )
                        response.raise_for_status()
                        print(
                            f"{label:30} {attempt:7} {len(counting.calls)} round trips: "
                            + " ".join(counting.calls)
                        )


# -- time to first token ---------------------------------------------------------------------


def stream_app(wrapped: bool) -> ASGIApp:
    """An SSE endpoint: the first token at once, then 15 more 5 ms apart."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def endpoint(request: Request) -> StreamingResponse:
        await request.body()

        async def tokens() -> AsyncIterator[bytes]:
            for i in range(16):
                if i:
                    await asyncio.sleep(0.005)
                yield f'data: {{"choices":[{{"delta":{{"content":"t{i}"}}}}]}}\n\n'.encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(tokens(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", endpoint, methods=["POST"])])
    if not wrapped:
        return app
    from aimiddleware.idempotency import IdempotencyMiddleware

    return IdempotencyMiddleware(app, store="memory://", anonymous="shared")


@contextlib.contextmanager
def _stream_servers() -> Iterator[dict[str, str]]:
    from testkit.processes import serving_process

    command = [sys.executable, "-m", "benchmarks.idempotency_probe", "serve"]
    with (
        serving_process([*command, "bare"], timeout=30, stop_timeout=10) as bare,
        serving_process([*command, "idempotency"], timeout=30, stop_timeout=10) as ours,
    ):
        yield {
            label: f"{server.url}/v1/chat/completions"
            for label, server in (("bare", bare), ("idempotency", ours))
        }


async def _ttft(servers: dict[str, str], requests: int) -> None:
    import httpx

    samples: dict[str, list[float]] = {label: [] for label in servers}
    body = json.loads(REQUEST_BODY) | {"stream": True}
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(requests + 20):
            for label, url in servers.items():
                headers = {"Idempotency-Key": f"ttft-{uuid.uuid4().hex}"}
                started = time.perf_counter()
                elapsed = 0.0
                async with client.stream("POST", url, json=body, headers=headers) as response:
                    async for chunk in response.aiter_raw():
                        if chunk and not elapsed:
                            elapsed = time.perf_counter() - started
                if i >= 20:  # warm-up
                    samples[label].append(elapsed * 1000)
    bare, ours = (statistics.median(samples[k]) for k in ("bare", "idempotency"))
    print(f"time to first token, median of {requests} interleaved streams (fresh keys):")
    print(f"  bare         {bare:.3f} ms")
    print(f"  idempotency  {ours:.3f} ms")
    print(f"  ratio (bare / with middleware) {bare / ours:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.idempotency_probe")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("round-trips")
    ttft = sub.add_parser("ttft")
    ttft.add_argument("--requests", type=int, default=200)
    serve = sub.add_parser("serve")
    serve.add_argument("label", choices=["bare", "idempotency"])
    serve.add_argument("--fd", type=int, required=True, help="a bound TCP socket")
    args = parser.parse_args()
    if args.command == "round-trips":
        asyncio.run(_round_trips())
    elif args.command == "ttft":
        with _stream_servers() as servers:
            asyncio.run(_ttft(servers, args.requests))
    else:
        import socket

        import uvicorn

        sock = socket.socket(fileno=args.fd)
        config = uvicorn.Config(
            stream_app(args.label == "idempotency"),
            host="127.0.0.1",
            port=sock.getsockname()[1],
            log_level="warning",
            access_log=False,
        )
        uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
