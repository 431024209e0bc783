"""Over a real socket: arrival order through gzip, heartbeats the openai SDK survives, and a
client disconnect that stops generation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request

from aimiddleware.context import Message, Receive, Scope, Send
from aimiddleware.normalize import NormalizeMiddleware
from aimiddleware.sse import SSEMiddleware

from ..live import Flag, Gate, lifespan, serve
from ..openai_app import DONE, chunk, streaming_app

BODY = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def gated_app(gate: Gate, produced_second: Flag) -> Any:
    async def produce(request: Request) -> AsyncIterator[bytes]:
        yield chunk("first " * 200)  # well above GZip's minimum size
        await gate.wait()
        produced_second.set()
        yield chunk("second")
        yield DONE

    return streaming_app(produce)


ORDERS = {
    "gzip outside sse": lambda app: GZipMiddleware(SSEMiddleware(app), minimum_size=10),
    "sse outside gzip": lambda app: SSEMiddleware(GZipMiddleware(app, minimum_size=10)),
    # a compressor that does compress streams, inside: the middleware decodes it on the fly
    "sse outside a stream-compressing gzip": lambda app: SSEMiddleware(
        GZipMiddleware(app, minimum_size=10, exclude_content_types=())
    ),
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_the_first_event_arrives_before_the_second_is_produced(order: str) -> None:
    gate, produced_second = Gate(), Flag()
    app = ORDERS[order](gated_app(gate, produced_second))
    with (
        serve(app) as url,
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST", f"{url}/v1/chat/completions", json=BODY, headers={"accept-encoding": "gzip"}
        ) as response,
    ):
        assert "content-encoding" not in response.headers
        assert response.headers["cache-control"] == "no-cache, no-transform"
        raw = response.iter_raw()
        received = b""
        while b"\n\n" not in received:
            received += next(raw)
        # the first event is here; the app has not even produced the second one yet
        assert received.startswith(b"data: ")
        assert not produced_second.is_set()
        gate.open()
        for rest in raw:
            received += rest
    assert received.endswith(DONE)
    assert b"second" in received


def test_heartbeats_during_a_3s_stall_and_the_openai_sdk_parses_the_stream() -> None:
    bodies: list[bytes] = []

    def recording(app: Any) -> Any:
        async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
            async def record(message: Message) -> None:
                if message["type"] == "http.response.body":
                    bodies.append(message.get("body", b""))
                await send(message)

            await app(scope, receive, record)

        return wrapper

    async def produce(request: Request) -> AsyncIterator[bytes]:
        yield chunk("before ")
        await asyncio.sleep(3)  # the stall itself (a slow tool call, a cold model)
        yield chunk("after")
        yield DONE

    app = recording(NormalizeMiddleware(SSEMiddleware(streaming_app(produce), heartbeat=0.5)))
    with (
        serve(app) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as client,
    ):
        stream = client.chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(part.choices[0].delta.content or "" for part in stream)
    assert text == "before after"
    heartbeats = [b for b in bodies if b == b": keep-alive\n\n"]
    assert len(heartbeats) >= 4  # 3 s of silence at one beat per 0.5 s
    assert all(b.startswith((b"data: ", b": keep-alive")) for b in bodies if b)


def test_a_client_disconnect_stops_generation_within_one_token() -> None:
    produced: list[int] = []
    stopped = Flag()

    async def generate(scope: Scope, receive: Receive, send: Send) -> None:
        # like a model server: reads the request, then only sends; it never listens for
        # the disconnect itself (Starlette's StreamingResponse would, under ASGI spec < 2.4)
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            for n in range(10_000):
                await asyncio.sleep(0.05)  # one token
                produced.append(n)
                body = chunk(f"t{n} ")
                await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            stopped.set()

    app = NormalizeMiddleware(SSEMiddleware(generate))
    with serve(app) as url:
        with (
            httpx.Client(timeout=10) as client,
            client.stream("POST", f"{url}/v1/chat/completions", json=BODY) as response,
        ):
            events = 0
            for line in response.iter_lines():
                events += line.startswith("data: ")
                if events == 3:
                    break
        at_close = len(produced)  # the connection is closed now
        closed = time.monotonic()
        assert stopped.wait(5)
        assert time.monotonic() - closed < 1
        assert len(produced) - at_close <= 1


def test_a_client_that_stops_reading_is_dropped_after_send_timeout() -> None:
    import socket

    stopped = Flag()
    sent_bytes: list[int] = []

    async def flood(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        event = b"data: " + b"x" * 65_536 + b"\n\n"
        try:
            for _ in range(2_000):  # 128 MiB: far more than any socket buffer holds
                await send({"type": "http.response.body", "body": event, "more_body": True})
                sent_bytes.append(len(event))
        finally:
            stopped.set()

    app = SSEMiddleware(flood, heartbeat=None, send_timeout=0.5)
    with serve(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65_536)
            sock.sendall(b"GET /events HTTP/1.1\r\nhost: test\r\n\r\n")
            # never read: the server's writes back up until the send timeout drops us
            assert stopped.wait(10)
    assert sum(sent_bytes) < 2_000 * 65_536
