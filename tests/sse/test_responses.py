"""A Responses API stream through SSEMiddleware: ``event:`` lines pass untouched, and a
heartbeat never lands inside a typed event, however the app cuts its writes."""

from __future__ import annotations

import asyncio

import pytest

from aimiddleware._asgi import Message, Receive, Scope, Send
from aimiddleware._sse import SSEParser
from aimiddleware.sse import SSEMiddleware
from testkit.responses_app import RESPONSES_PATH, response_events

from ..asgi import http_scope

pytestmark = pytest.mark.anyio

HEARTBEAT = b": keep-alive\n\n"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream")],
}


async def never_disconnects() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_heartbeats_fall_between_typed_events_only() -> None:
    events = response_events(["Hel", "lo", "!"])
    sent: list[bytes] = []
    beat = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        for frame in events:
            # every event in three writes: its `event:` line, half its data, the rest; the
            # stream stalls for heartbeats inside the event and between two events
            cut = frame.index(b"\n") + 1
            middle = (cut + len(frame)) // 2
            for part in (frame[:cut], frame[cut:middle], frame[middle:]):
                await send({"type": "http.response.body", "body": part, "more_body": True})
                await asyncio.sleep(0.03)
            beat.clear()
            await asyncio.wait_for(beat.wait(), 5)  # one heartbeat between events, at least
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            sent.append(message["body"])
            if message["body"] == HEARTBEAT:
                beat.set()

    scope = http_scope("POST", RESPONSES_PATH)
    await SSEMiddleware(app, heartbeat=0.01)(scope, never_disconnects, send)

    stream = b"".join(sent)
    parsed = SSEParser().feed(stream)
    # every heartbeat is an event of its own, and the typed events are the app's, byte for byte
    assert [e.raw for e in parsed if not e.is_comment] == events
    assert next(e.event for e in parsed if not e.is_comment) == "response.created"
    assert len([e for e in parsed if e.is_comment]) >= len(events)
    assert stream.replace(HEARTBEAT, b"") == b"".join(events)
