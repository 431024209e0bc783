"""Small apps the rate-limit tests wrap: an OpenAI-shaped endpoint that streams or not.

``SetPrincipal`` stands in for the auth middleware (it is not under test here): it reads the
principal from ``x-test-principal: <id>[:<tier>]``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aimiddleware import Principal, set_principal
from aimiddleware._asgi import ASGIApp, Receive, Scope, Send, get_header

from ..asgi import body_of as body_of
from ..asgi import chunk, http_scope, request_receive, sse
from ..asgi import headers_of as headers_of
from ..asgi import status_of as status_of

USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}


class Upstream:
    """An OpenAI-compatible stand-in that records what it received."""

    def __init__(
        self,
        *,
        usage: dict[str, int] | None = None,
        tokens: int = 3,
        null_usage: bool = False,
        states_usage: bool = True,
    ) -> None:
        self.usage = dict(USAGE) if usage is None else usage
        # False: a proxy that rebuilds the request (stream_options lost) and answers without usage
        self.states_usage = states_usage
        self.tokens = tokens
        self.null_usage = null_usage  # "usage": null on every chunk asked for usage, as OpenAI
        self.bodies: list[dict[str, Any]] = []
        self.delay = 0.0
        self.gate: asyncio.Event | None = None

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        if body.get("fail"):
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, 500)
        if not body.get("stream"):
            answer = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                "usage": self.usage,
            }
            if not self.states_usage:
                del answer["usage"]
            if self.gate is not None:
                await self.gate.wait()
            return JSONResponse(answer)
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True
        include_usage = include_usage and self.states_usage

        async def events() -> Any:
            for n in range(self.tokens):
                if self.gate is not None and n == 1:
                    await self.gate.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield sse(self._null(chunk(f"t{n}"), include_usage))
            yield sse(self._null(chunk(None, finish="stop"), include_usage))
            if include_usage:
                yield sse(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion.chunk",
                        "model": "m",
                        "choices": [],
                        "usage": self.usage,
                    }
                )
            yield sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream")

    def _null(self, payload: dict[str, Any], include_usage: bool) -> dict[str, Any]:
        if not (include_usage and self.null_usage):
            return payload
        head = {k: v for k, v in payload.items() if k != "choices"}
        return {**head, "usage": None, "choices": payload["choices"]}

    def app(self) -> Starlette:
        async def ping(request: Request) -> Response:
            return JSONResponse({"ok": True})

        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/ping", ping, methods=["GET", "POST"]),
            ]
        )


class SetPrincipal:
    """Stand-in for the auth middleware: principal from ``x-test-principal: id[:tier]``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = get_header(scope["headers"], b"x-test-principal")
            if raw:
                ident, _, tier = raw.decode().partition(":")
                set_principal(scope, Principal(id=ident, tier=tier or None, credential="api_key"))
        await self.app(scope, receive, send)


# the prompt the limiter estimates for chat_body()'s one message of 40 characters, with the
# default TokenEstimates: 40 / 4 characters per token, 6 for the message, 25 for the request
CHAT_PROMPT = 40 // 4 + 6 + 25


def chat_body(
    *, stream: bool = False, max_tokens: int = 10, content: str = "x" * 40, **extra: Any
) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "stream": stream,
        **extra,
    }


async def call_raw(
    app: ASGIApp,
    body: dict[str, Any],
    *,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    disconnect_after: asyncio.Event | None = None,
    path: str = "/v1/chat/completions",
    sent: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Drive the ASGI app directly and record every ``send`` message (no buffering)."""
    raw = json.dumps(body).encode()
    sent = [] if sent is None else sent
    receive = request_receive(raw, disconnect=disconnect_after)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope(path=path, headers=[(b"content-type", b"application/json"), *headers])
    await app(scope, receive, send)
    return sent
