"""A small OpenAI-shaped streaming app for the SSE and normalisation tests (no model)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def chunk(content: str, finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "test-model",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def streaming_app(
    events: Callable[[Request], AsyncIterator[bytes]],
    *,
    media_type: str = "text/event-stream",
    path: str = "/v1/chat/completions",
) -> Starlette:
    """``POST <path>`` streams whatever ``events(request)`` yields."""

    async def chat(request: Request) -> Response:
        await request.body()
        return StreamingResponse(events(request), media_type=media_type)

    return Starlette(routes=[Route(path, chat, methods=["POST"])])


async def stall_then(steps: list[Callable[[], Awaitable[Any]] | bytes]) -> AsyncIterator[bytes]:
    for step in steps:
        if isinstance(step, bytes):
            yield step
        else:
            await step()
