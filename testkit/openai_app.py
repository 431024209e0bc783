"""OpenAI-shaped stand-in endpoints, JSON and SSE, without a model.

:func:`streaming_app` streams whatever events it is given (the SSE and normalisation tests);
:func:`chat_app` answers JSON, or a stream of :func:`sse_chunks` when the body asks for one,
counting its runs (the idempotency tests and benchmarks).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def chunk(content: str, finish: str | None = None) -> bytes:
    """One ``chat.completion.chunk`` carrying ``content``, as an SSE event."""
    payload = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "test-model",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
#: The route of :func:`chat_app`.
PATH = "/v1/chat/completions"


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


@dataclass
class Counter:
    """Counts how many times the endpoint really ran (one generation each)."""

    runs: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)


def sse_chunks(n: int) -> list[bytes]:
    """``n`` numbered delta events (``id: 0``, ...), then ``[DONE]``."""
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
