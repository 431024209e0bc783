"""Small apps and a raw-ASGI driver shared by the idempotency tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aimiddleware.context import ASGIApp, Message
from aimiddleware.stores import Store

PATH = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@dataclass
class Counter:
    """Counts how many times the endpoint really ran (one generation each)."""

    runs: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)


def sse_chunks(n: int) -> list[bytes]:
    events = [{"choices": [{"delta": {"content": f"tok{i}"}}]} for i in range(n)]
    return [f"id: {i}\ndata: {json.dumps(e)}\n\n".encode() for i, e in enumerate(events)] + [
        b"data: [DONE]\n\n"
    ]


def chat_app(
    counter: Counter,
    *,
    delay: float = 0.0,
    status: int = 200,
    chunks: int = 5,
    chunk_delay: float = 0.0,
    fail: bool = False,
    fail_mid_stream: bool = False,
    gate: asyncio.Event | None = None,
) -> Starlette:
    """An OpenAI-shaped endpoint: JSON, or SSE when the body says ``"stream": true``."""

    async def endpoint(request: Request) -> Response:
        payload = await request.json()
        counter.runs += 1
        run = counter.runs
        counter.started.set()
        if delay:
            await asyncio.sleep(delay)
        if fail:
            raise RuntimeError("the model crashed")
        if payload.get("stream"):

            async def events() -> AsyncIterator[bytes]:
                for i, chunk in enumerate(sse_chunks(chunks)):
                    if gate is not None and i == 1:
                        await gate.wait()
                    if fail_mid_stream and i == 2:
                        raise RuntimeError("the model crashed mid-stream")
                    if chunk_delay:
                        await asyncio.sleep(chunk_delay)
                    yield chunk

            return StreamingResponse(
                events(), media_type="text/event-stream", headers={"x-run": str(run)}
            )
        return JSONResponse(
            {"id": f"chatcmpl-{run}", "run": run, "echo": payload},
            status_code=status,
            headers={"x-run": str(run), "set-cookie": "session=secret"},
        )

    return Starlette(routes=[Route(PATH, endpoint, methods=["POST", "PATCH", "PUT"])])


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


class CountingStore(Store):
    """A proxy that counts the round trips each primitive costs on the wrapped store."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def get(self, key: str) -> bytes | None:
        self.calls.append("get")
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self.calls.append("set")
        await self.inner.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        self.calls.append("delete")
        await self.inner.delete(key)

    async def claim(self, key: str, value: bytes, ttl: float) -> bytes | None:
        self.calls.append("claim")
        return await self.inner.claim(key, value, ttl)

    async def renew(self, key: str, expected: bytes, ttl: float) -> bool:
        self.calls.append("renew")
        return await self.inner.renew(key, expected, ttl)

    async def replace(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        self.calls.append("replace")
        return await self.inner.replace(key, expected, value, ttl)

    async def release(self, key: str, expected: bytes) -> bool:
        self.calls.append("release")
        return await self.inner.release(key, expected)

    async def incr(self, key: str, amount: int, ttl: float) -> int:
        self.calls.append("incr")
        return await self.inner.incr(key, amount, ttl)

    async def append(self, key: str, chunk: bytes, ttl: float) -> int:
        self.calls.append("append")
        return await self.inner.append(key, chunk, ttl)

    async def chunks(self, key: str, start: int = 0) -> list[bytes]:
        self.calls.append("chunks")
        return await self.inner.chunks(key, start)

    async def ping(self) -> None:
        self.calls.append("ping")
        await self.inner.ping()
