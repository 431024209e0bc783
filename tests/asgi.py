"""ASGI helpers the test packages share: a request scope, a driver that records what an app
sends, the accessors for what it sent, and OpenAI-shaped SSE events.

A test drives a middleware message by message where the order of the messages is what it
asserts (a stream, a disconnect, a body read twice); for whole requests it uses httpx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aimiddleware import Principal, set_principal
from aimiddleware.context import ASGIApp, Message, Receive, Scope, Send
from testkit.openai_app import DONE

__all__ = [
    "CHAT_PATH",
    "DONE",
    "Exchange",
    "Result",
    "body_of",
    "chunk",
    "headers_of",
    "http_scope",
    "recording_app",
    "request_receive",
    "run",
    "sse",
    "status_of",
]

CHAT_PATH = "/v1/chat/completions"


# -- requests ---------------------------------------------------------------------------------


def http_scope(
    method: str = "POST",
    path: str = CHAT_PATH,
    headers: Iterable[tuple[bytes, bytes]] = (),
    principal: Principal | None = None,
    *,
    query: bytes = b"",
    scheme: str = "http",
    http_version: str = "1.1",
    spec_version: str | None = None,
    client: tuple[str, int] = ("127.0.0.1", 50000),
    server: tuple[str, int] = ("127.0.0.1", 8000),
) -> Scope:
    """An HTTP request scope as a server builds it, ``root_path`` empty.

    ``spec_version`` is left out unless given (ASGI then reads it as ``"2.0"``); ``principal``
    is set as an auth middleware outside would have.
    """
    asgi = {"version": "3.0"}
    if spec_version is not None:
        asgi["spec_version"] = spec_version
    scope: Scope = {
        "type": "http",
        "asgi": asgi,
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": list(headers),
        "client": client,
        "server": server,
        "state": {},
    }
    if principal is not None:
        set_principal(scope, principal)
    return scope


def request_receive(
    body: bytes | list[bytes] = b"", *, disconnect: asyncio.Event | None = None
) -> Receive:
    """A server's ``receive`` for one request: ``body`` (one chunk or several), then
    ``http.disconnect`` once ``disconnect`` is set; without it the client stays connected."""
    chunks = [body] if isinstance(body, bytes) else body
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    gone = disconnect if disconnect is not None else asyncio.Event()

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    return receive


async def run(
    middleware: ASGIApp,
    scope: Scope,
    body: bytes | list[bytes] = b"",
) -> list[Message]:
    """Drive ``middleware`` with ``body`` (one chunk or several) and return what it sent; a read
    past the body is answered ``http.disconnect``."""
    gone = asyncio.Event()
    gone.set()
    receive = request_receive(body, disconnect=gone)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


# -- what an app sent -------------------------------------------------------------------------


@dataclass
class Result:
    """The messages an app sent for one request, in order, read as a response."""

    messages: list[Message]

    @property
    def start(self) -> Message:
        return next(m for m in self.messages if m["type"] == "http.response.start")

    @property
    def status(self) -> int:
        return int(self.start["status"])

    @property
    def headers(self) -> dict[str, str]:
        """Lower-cased names; the last of a repeated header."""
        return {k.decode().lower(): v.decode() for k, v in self.start["headers"]}

    @property
    def chunks(self) -> list[bytes]:
        """The non-empty body messages' bodies."""
        return [
            m["body"] for m in self.messages if m["type"] == "http.response.body" and m.get("body")
        ]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def complete(self) -> bool:
        """Whether the last body message (``more_body`` false) was sent."""
        return any(
            m["type"] == "http.response.body" and not m.get("more_body", False)
            for m in self.messages
        )

    def json(self) -> Any:
        return json.loads(self.body)


def body_of(messages: list[Message]) -> bytes:
    return Result(messages).body


def headers_of(messages: list[Message]) -> dict[str, str]:
    return Result(messages).headers


def status_of(messages: list[Message]) -> int:
    return Result(messages).status


@dataclass
class Exchange:
    """What one request sent back, and what reached the app behind the middleware."""

    sent: list[Message] = field(default_factory=list)
    app_called: bool = False
    app_body: bytes | None = None
    app_scope: Scope | None = None

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case) in the response start."""
        return next((v for k, v in self.sent[0]["headers"] if k.lower() == name), None)

    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def recording_app(exchange: Exchange) -> ASGIApp:
    """An app that reads the whole body it is given, then answers 200 ``{"ok": true}``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        exchange.app_called = True
        exchange.app_scope = scope
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        exchange.app_body = b"".join(chunks)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok":true}'})

    return app


# -- OpenAI-shaped streams --------------------------------------------------------------------


def sse(payload: Any) -> bytes:
    """One ``data:`` event: ``payload`` as JSON, or as it is when it is a string (``[DONE]``)."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def chunk(
    content: str | None, finish: str | None = None, *, id: str = "chatcmpl-1", model: str = "m"
) -> dict[str, Any]:
    """One ``chat.completion.chunk``: a ``content`` delta (none when None), a finish reason."""
    delta = {} if content is None else {"content": content}
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
