"""Cost against request body size (1 KB to 1 MB) and against stream length, bare and stacked.

Names read ``<series>:<variant>:<point>`` (``size:bare:1k``, ``stream:stack-memory:1000``): the
report pairs the variants point by point.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .apps import REQUEST_BODY, ASGIApp, Config, bare_app
from .configs_stack import (
    MODEL,
    STACK_HEADERS,
    STACK_MODULES,
    build_stack,
    fresh_keys_lua,
)

PAYLOAD_SIZES = {"1k": 1_000, "10k": 10_000, "100k": 100_000, "1m": 1_000_000}
STREAM_LENGTHS = (1, 100, 1000)
# a 1000-chunk stream through the stack takes long enough that 16 connections complete too few
# requests in a few seconds to count; bare and stacked streams use the same 4
STREAM_CONNECTIONS = 4


def _streaming_stack_app(chunks: int) -> ASGIApp:
    return build_stack(streaming_app(chunks), store_url="memory://")


def _json_stack_app(store_url: str) -> ASGIApp:
    return build_stack(bare_app(), store_url=store_url)


def sized_body(size: int) -> bytes:
    """A chat request of exactly ``size`` bytes (the user message padded)."""
    empty = json.loads(REQUEST_BODY)
    empty["messages"][0]["content"] = ""
    overhead = len(json.dumps(empty).encode())
    if size < overhead:
        raise ValueError(f"a request body is at least {overhead} bytes")
    empty["messages"][0]["content"] = "x" * (size - overhead)
    return json.dumps(empty).encode()


def stream_events(chunks: int) -> list[bytes]:
    """``chunks`` OpenAI chat chunks, the finish and usage chunks, and ``[DONE]``."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": MODEL}

    def event(choices: list[Any], **extra: Any) -> bytes:
        return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

    out = [
        event([{"index": 0, "delta": {"content": f" tok{i}"}, "finish_reason": None}])
        for i in range(chunks)
    ]
    out.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    out.append(event([], usage=usage))
    out.append(b"data: [DONE]\n\n")
    return out


def streaming_app(chunks: int) -> ASGIApp:
    """Bare Starlette streaming ``chunks`` chunks as text/event-stream, one ASGI message each."""
    events = stream_events(chunks)

    async def endpoint(request: Request) -> Response:
        await request.body()

        async def body() -> AsyncIterator[bytes]:
            for data in events:
                yield data

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", endpoint, methods=["POST"])])


STREAM_BODY = json.dumps({**json.loads(REQUEST_BODY), "stream": True}).encode()


def _payload(label: str, size: int) -> list[Config]:
    body = sized_body(size)
    return [
        Config(
            f"size:bare:{label}",
            bare_app,
            group="payload",
            body=body,
            description=f"bare Starlette, {size:,} byte request body",
        ),
        Config(
            f"size:stack-memory:{label}",
            partial(_json_stack_app, "memory://"),
            group="payload",
            body=body,
            headers=STACK_HEADERS,
            lua=fresh_keys_lua(body, STACK_HEADERS),
            fresh_keys=True,
            description=f"full stack on memory, {size:,} byte request body",
            requires=STACK_MODULES,
        ),
    ]


def _stream(chunks: int) -> list[Config]:
    return [
        Config(
            f"stream:bare:{chunks}",
            partial(streaming_app, chunks),
            group="stream",
            body=STREAM_BODY,
            connections=STREAM_CONNECTIONS,
            description=f"bare Starlette streaming {chunks} chunks",
        ),
        Config(
            f"stream:stack-memory:{chunks}",
            partial(_streaming_stack_app, chunks),
            group="stream",
            body=STREAM_BODY,
            connections=STREAM_CONNECTIONS,
            headers=STACK_HEADERS,
            lua=fresh_keys_lua(STREAM_BODY, STACK_HEADERS),
            fresh_keys=True,
            description=f"full stack on memory streaming {chunks} chunks",
            requires=STACK_MODULES,
        ),
    ]


CONFIGS = [
    *(cfg for label, size in PAYLOAD_SIZES.items() for cfg in _payload(label, size)),
    *(cfg for chunks in STREAM_LENGTHS for cfg in _stream(chunks)),
]
