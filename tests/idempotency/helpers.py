"""Small apps and a raw-ASGI driver shared by the idempotency tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from aimiddleware.context import ASGIApp, Message
from testkit.openai_app import PATH as PATH
from testkit.openai_app import Counter as Counter
from testkit.openai_app import chat_app as chat_app
from testkit.openai_app import sse_chunks as sse_chunks
from testkit.stores import CountingStore as CountingStore

from ..asgi import Result as Result
from ..asgi import http_scope, request_receive

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}


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
    return http_scope(method, path, raw, query=query, spec_version="2.3")


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
    receive = request_receive(raw, disconnect=disconnect)

    async def send(message: Message) -> None:
        messages.append(message)
        if on_send is not None:
            await on_send(message)

    await app(scope, receive, send)
    return Result(messages)
