from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import StreamingResponse

from aimiddleware.context import Message, Receive, Scope, Send, get_annotations
from aimiddleware.sse import SSEMiddleware

from ..asgi import http_scope

pytestmark = pytest.mark.anyio

START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream")],
}


def scope(spec_version: str = "2.4") -> dict[str, Any]:
    return http_scope(spec_version=spec_version)


class Client:
    """The server side of one request: a body, then ``http.disconnect`` when the test says.

    It fails the test if two reads are ever in flight at once (undefined behaviour in ASGI).
    """

    def __init__(self, chunks: list[bytes] | None = None) -> None:
        self.chunks = list(chunks or [b'{"stream": true}'])
        self.gone = asyncio.Event()
        self.reading = 0
        self.reads = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.reading += 1
        self.reads += 1
        try:
            assert self.reading == 1, "two concurrent reads of the server's receive"
            if self.chunks:
                chunk = self.chunks.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}
            await self.gone.wait()
            return {"type": "http.disconnect"}
        finally:
            self.reading -= 1

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def events(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body" and m["body"]]


async def test_a_disconnect_cancels_the_generation_within_one_token() -> None:
    client = Client()
    produced: list[int] = []
    cancelled = asyncio.Event()
    disconnected_at: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(START)
        try:
            for token in range(1000):
                await asyncio.sleep(0.005)  # one token of generation
                produced.append(token)
                await send(
                    {"type": "http.response.body", "body": b"data: t\n\n", "more_body": True}
                )
                if token == 2:
                    disconnected_at.append(len(produced))
                    client.gone.set()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            cancelled.set()
            raise

    request = scope()
    await asyncio.wait_for(
        SSEMiddleware(app, heartbeat=None)(request, client.receive, client.send), 5
    )
    assert cancelled.is_set()
    assert len(produced) - disconnected_at[0] <= 1
    assert get_annotations(request)["aimiddleware.sse.outcome"] == "client_disconnected"


async def test_the_disconnect_is_fanned_out_to_the_apps_own_listener() -> None:
    # Starlette below ASGI spec 2.4 listens for the disconnect itself, concurrently with the
    # stream: both it and the middleware must learn of it from a single read
    client = Client()
    stopped = asyncio.Event()

    async def tokens() -> Any:
        try:
            for _ in range(1000):
                yield b"data: t\n\n"
                await asyncio.sleep(0.005)
                client.gone.set()
        finally:
            stopped.set()

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await Request(scope, receive).body()
        await StreamingResponse(tokens(), media_type="text/event-stream")(scope, receive, send)

    await asyncio.wait_for(
        SSEMiddleware(endpoint, heartbeat=None)(scope("2.3"), client.receive, client.send), 5
    )
    assert stopped.is_set()
    assert len(client.events()) < 10


async def test_the_body_read_after_the_stream_started_reaches_the_app_in_order() -> None:
    client = Client([b"one ", b"two ", b"three"])
    received: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)  # the watch starts now, before the app read anything
        while True:
            message = await receive()
            received.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b"data: ok\n\n", "more_body": False})

    await asyncio.wait_for(SSEMiddleware(app)(scope(), client.receive, client.send), 5)
    assert b"".join(received) == b"one two three"
    assert client.events() == [b"data: ok\n\n"]


async def test_every_later_receive_of_the_app_sees_the_disconnect() -> None:
    client = Client()
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(START)
        client.gone.set()
        try:
            await asyncio.sleep(5)
        finally:
            # cleanup code asking again must not hang
            seen.append((await receive())["type"])
            seen.append((await receive())["type"])

    await asyncio.wait_for(SSEMiddleware(app)(scope(), client.receive, client.send), 5)
    assert seen == ["http.disconnect", "http.disconnect"]


async def test_request_is_disconnected_works_beside_the_watch() -> None:
    client = Client()
    answers: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        await request.body()
        await send(START)
        answers.append(await request.is_disconnected())  # cancels its own receive at once
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": False})

    await asyncio.wait_for(SSEMiddleware(app)(scope(), client.receive, client.send), 5)
    assert answers == [False]
    assert client.events() == [b"data: 1\n\n"]


async def test_a_client_that_stops_reading_is_dropped_after_send_timeout() -> None:
    stuck = asyncio.Event()
    cancelled = asyncio.Event()

    async def never_disconnects() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message["body"] == b"data: 2\n\n":
            stuck.set()
            await asyncio.Event().wait()  # the socket buffer is full and stays full

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        try:
            for n in range(1, 100):
                await send(
                    {
                        "type": "http.response.body",
                        "body": f"data: {n}\n\n".encode(),
                        "more_body": True,
                    }
                )
        except asyncio.CancelledError:
            cancelled.set()
            raise

    request = scope()
    started = time.monotonic()
    await asyncio.wait_for(
        SSEMiddleware(app, heartbeat=None, send_timeout=0.2)(request, never_disconnects, send), 5
    )
    assert stuck.is_set()
    assert cancelled.is_set()
    assert time.monotonic() - started < 0.2 + 0.5
    assert get_annotations(request)["aimiddleware.sse.outcome"] == "send_timeout"


async def test_a_cancellation_from_outside_still_propagates() -> None:
    client = Client()
    in_stream = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(START)
        in_stream.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(SSEMiddleware(app)(scope(), client.receive, client.send))
    await in_stream.wait()
    task.cancel()  # the server shuts down
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_disconnect_after_the_response_does_not_cancel_background_work() -> None:
    client = Client()
    finished = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(START)
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": False})
        client.gone.set()
        await asyncio.sleep(0.05)  # a background task after the response
        finished.set()

    await asyncio.wait_for(SSEMiddleware(app)(scope(), client.receive, client.send), 5)
    assert finished.is_set()


async def test_non_stream_responses_are_not_watched() -> None:
    client = Client()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        client.gone.set()
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})

    await asyncio.wait_for(SSEMiddleware(app)(scope(), client.receive, client.send), 5)
    assert client.reads == 1
    assert client.events() == [b"{}"]


async def test_a_cancellation_handed_back_in_a_group_is_absorbed_too() -> None:
    client = Client()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(START)
        client.gone.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError as cancelled:
            raise BaseExceptionGroup("task group", [cancelled]) from None

    request = scope()
    await asyncio.wait_for(SSEMiddleware(app)(request, client.receive, client.send), 5)
    assert get_annotations(request)["aimiddleware.sse.outcome"] == "client_disconnected"
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


async def test_other_failures_of_the_app_propagate() -> None:
    client = Client()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(START)
        raise LookupError("a bug")

    with pytest.raises(LookupError):
        await SSEMiddleware(app)(scope(), client.receive, client.send)
