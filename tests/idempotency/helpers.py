"""Small apps and a raw-ASGI driver shared by the idempotency tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aimiddleware._asgi import ASGIApp, Message
from testkit.openai_app import PATH as PATH
from testkit.openai_app import Counter as Counter
from testkit.openai_app import chat_app as chat_app
from testkit.openai_app import sse_chunks as sse_chunks
from testkit.stores import CountingStore as CountingStore

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@dataclass
class Result:
    messages: list[Message]

    @property
    def start(self) -> Message:
        return next(m for m in self.messages if m["type"] == "http.response.start")

    @property
    def status(self) -> int:
        return int(self.start["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode().lower(): v.decode() for k, v in self.start["headers"]}

    @property
    def chunks(self) -> list[bytes]:
        return [
            m["body"] for m in self.messages if m["type"] == "http.response.body" and m.get("body")
        ]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def complete(self) -> bool:
        return any(
            m["type"] == "http.response.body" and not m.get("more_body", False)
            for m in self.messages
        )

    def json(self) -> Any:
        return json.loads(self.body)


def scope_for(
    *,
    key: str | bytes | None = "key-1",
    method: str = "POST",
    path: str = PATH,
    query: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> dict[str, Any]:
    raw = [(b"content-type", b"application/json"), *headers]
    if key is not None:
        raw.append((b"idempotency-key", key.encode() if isinstance(key, str) else key))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(
    app: ASGIApp,
    body: Any = BODY,
    *,
    scope: dict[str, Any] | None = None,
    disconnect: asyncio.Event | None = None,
    on_send: Any = None,
    **scope_options: Any,
) -> Result:
    """Drive ``app`` with one request and record every message it sends, in order."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    scope = scope if scope is not None else scope_for(**scope_options)
    messages: list[Message] = []
    delivered = False
    gone = disconnect or asyncio.Event()

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        messages.append(message)
        if on_send is not None:
            await on_send(message)

    await app(scope, receive, send)
    return Result(messages)
