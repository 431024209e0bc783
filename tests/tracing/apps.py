"""Small apps, ASGI drivers and a uvicorn runner for the tracing tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aimiddleware._asgi import ASGIApp, Message, Scope, trace_id

from .. import asgi
from ..asgi import sse
from ..servers import ThreadedServer

# Credentials every test request carries; none may show up in any span, metric or log line.
TOKEN = "sk-test-3f9a1c0d5e7b2a4c6e8f0a1b"
API_KEY = "ak-live-9d8c7b6a5f4e3d2c1b0a"
SECRET_HEADERS = [
    (b"authorization", f"Bearer {TOKEN}".encode()),
    (b"x-api-key", API_KEY.encode()),
]
SECRETS = (TOKEN, API_KEY)

WORDS = ["Hello", "!", " How", " can", " I", " help", "?"]
MODEL = "SmolLM2-135M-Instruct"


def chat_request(*, stream: bool, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 32,
        "temperature": 0.5,
        "top_p": 0.9,
        "stream": stream,
    }
    body.update(extra)
    return json.dumps(body).encode()


chunk = partial(asgi.chunk, id="chatcmpl-42", model=MODEL)


def stream_events(words: list[str] = WORDS, *, prompt_tokens: int = 12) -> list[bytes]:
    """A chat stream as an OpenAI server sends it, usage computed from what it sends."""
    events = [sse(chunk(word)) for word in words]
    events.append(sse(chunk(None, "stop")))
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(words),
        "total_tokens": prompt_tokens + len(words),
    }
    events.append(sse({"id": "chatcmpl-42", "model": MODEL, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return events


PROMPT_TOKENS = 12


def openai_like_app() -> Starlette:
    """Streams carry a usage chunk only when the request asks for one, as OpenAI's do."""

    async def chat(request: Request) -> Response:
        body = json.loads(await request.body())
        usage = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": len(WORDS),
            "total_tokens": PROMPT_TOKENS + len(WORDS),
        }
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "chatcmpl-7",
                    "object": "chat.completion",
                    "model": MODEL,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(WORDS)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        options = body.get("stream_options") or {}

        async def events() -> AsyncIterator[bytes]:
            for word in WORDS:
                yield sse(chunk(word))
            yield sse(chunk(None, "stop"))
            if options.get("include_usage") is True:
                yield sse({"id": "chatcmpl-42", "model": MODEL, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def embeddings(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}],
                "model": MODEL,
                "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS},
            }
        )

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )


@dataclass
class Seen:
    """What the test app observed about its requests."""

    bodies: list[bytes] = field(default_factory=list)
    trace_ids: list[str | None] = field(default_factory=list)


def chat_app(seen: Seen | None = None, *, delay: float = 0.0, fail: bool = False) -> Starlette:
    seen = seen if seen is not None else Seen()

    async def chat(request: Request) -> Response:
        body = await request.body()
        seen.bodies.append(body)
        seen.trace_ids.append(trace_id(request.scope))
        if fail:
            raise RuntimeError("the model crashed")
        payload = json.loads(body)
        if payload.get("stream"):

            async def events() -> AsyncIterator[bytes]:
                for event in stream_events():
                    if delay:
                        await asyncio.sleep(delay)
                    yield event

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "chatcmpl-7",
                "object": "chat.completion",
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hello!"},
                        "finish_reason": "length",
                    }
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
            }
        )

    async def item(request: Request) -> Response:
        return JSONResponse({"id": request.path_params["item_id"]})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def teapot(request: Request) -> Response:
        return JSONResponse({"error": "no"}, status_code=int(request.query_params["status"]))

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/items/{item_id:int}", item),
            Route("/health", health),
            Route("/status", teapot),
        ]
    )


# -- driving an ASGI app message by message --------------------------------------------------


@dataclass
class Sent:
    message: Message
    at_ns: int


@dataclass
class Exchange:
    sent: list[Sent]
    scope: Scope

    @property
    def status(self) -> int:
        return int(self.sent[0].message["status"])

    @property
    def body(self) -> bytes:
        return b"".join(s.message.get("body", b"") for s in self.sent[1:])


def http_scope(
    method: str,
    path: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> Scope:
    raw = [(b"host", b"api.example.test:8443"), (b"user-agent", b"agent-sdk/1.0"), *SECRET_HEADERS]
    if body:
        raw += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    raw += headers or []
    return asgi.http_scope(
        method,
        path,
        raw,
        scheme="https",
        spec_version="2.3",
        client=("10.1.2.3", 50123),
        server=("127.0.0.1", 8443),
    )


async def call(
    app: ASGIApp,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    disconnect_after: int | None = None,
    query: bytes = b"",
) -> Exchange:
    """Run one request through ``app``, recording each sent message with its time.

    ``disconnect_after``: the client goes away once that many body messages were sent.
    """
    scope = http_scope(method, path, headers=headers, body=body)
    scope["query_string"] = query
    sent: list[Sent] = []
    gone = asyncio.Event()
    receive = asgi.request_receive(body, disconnect=gone)

    async def send(message: Message) -> None:
        if gone.is_set():
            raise OSError("client disconnected")
        sent.append(Sent(dict(message), time.time_ns()))
        bodies = sum(1 for s in sent if s.message["type"] == "http.response.body")
        if disconnect_after is not None and bodies >= disconnect_after:
            gone.set()

    await app(scope, receive, send)
    gone.set()
    return Exchange(sent, scope)


# -- a real server on loopback ----------------------------------------------------------------


@contextlib.contextmanager
def serving(app: ASGIApp) -> Iterator[int]:
    """Serve ``app`` with uvicorn on a free loopback port in a background thread."""
    with ThreadedServer(app) as server:
        yield server.port
