from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aimiddleware.context import Message, Receive, Scope, Send, get_annotations
from aimiddleware.sse import SSEMiddleware

from ..asgi import http_scope

pytestmark = pytest.mark.anyio

START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream")],
}
HEARTBEAT = b": keep-alive\n\n"


def scope() -> dict[str, Any]:
    return http_scope("GET", "/events")


async def never_disconnects() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def body(chunk: bytes, more: bool = True) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


async def test_heartbeats_fill_a_stall_between_events() -> None:
    release = asyncio.Event()
    sent: list[bytes] = []
    beats_seen = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send(body(b"data: 1\n\n"))
        await release.wait()
        await send(body(b"data: 2\n\n"))
        await send(body(b"", more=False))

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            sent.append(message["body"])
            if sent.count(HEARTBEAT) >= 2:
                beats_seen.set()

    request = scope()
    task = asyncio.create_task(SSEMiddleware(app, heartbeat=0.05)(request, never_disconnects, send))
    await asyncio.wait_for(beats_seen.wait(), 5)
    release.set()
    await asyncio.wait_for(task, 5)
    assert sent[0] == b"data: 1\n\n"
    assert sent[-1] == b"data: 2\n\n"
    middle = sent[1:-1]
    assert len(middle) >= 2
    assert set(middle) == {HEARTBEAT}
    assert get_annotations(request)["aimiddleware.sse.heartbeats"] == len(middle)
    assert get_annotations(request)["aimiddleware.sse.outcome"] == "complete"


async def test_no_heartbeat_is_written_inside_an_event() -> None:
    release = asyncio.Event()
    sent: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send(body(b"data: first half"))
        await release.wait()
        await send(body(b", second half\n\n"))
        await send(body(b"", more=False))

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            sent.append(message["body"])

    task = asyncio.create_task(SSEMiddleware(app, heartbeat=0.02)(scope(), never_disconnects, send))
    await asyncio.sleep(0.2)  # ten heartbeat intervals inside one event
    release.set()
    await asyncio.wait_for(task, 5)
    assert sent == [b"data: first half", b", second half\n\n"]


async def test_every_event_resets_the_heartbeat_clock() -> None:
    sent: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        for n in range(10):
            await send(body(f"data: {n}\n\n".encode()))
            await asyncio.sleep(0.02)
        await send(body(b"", more=False))

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            sent.append(message["body"])

    # events every 20 ms, heartbeat after 150 ms of silence: never due
    await SSEMiddleware(app, heartbeat=0.15)(scope(), never_disconnects, send)
    assert HEARTBEAT not in sent
    assert len(sent) == 10


async def test_heartbeats_can_be_disabled_and_renamed() -> None:
    release = asyncio.Event()
    first = asyncio.Event()
    sent: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await release.wait()
        await send(body(b"", more=False))

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            sent.append(message["body"])
            first.set()

    task = asyncio.create_task(
        SSEMiddleware(app, heartbeat=0.02, heartbeat_comment="ping")(
            scope(), never_disconnects, send
        )
    )
    off = asyncio.create_task(SSEMiddleware(app, heartbeat=None)(scope(), never_disconnects, send))
    await asyncio.wait_for(first.wait(), 5)
    release.set()
    await asyncio.wait_for(asyncio.gather(task, off), 5)
    assert set(sent) == {b": ping\n\n"}
