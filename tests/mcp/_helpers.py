"""Helpers of the MCP tests: a raw ASGI exchange, recorded."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aimiddleware import Principal, set_principal
from aimiddleware._asgi import ASGIApp, Message, Receive, Scope, Send, get_header


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
        return get_header(self.sent[0]["headers"], name)

    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def http_scope(
    method: str = "POST",
    path: str = "/mcp",
    headers: Iterable[tuple[bytes, bytes]] = (),
    principal: Principal | None = None,
) -> Scope:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    if principal is not None:
        set_principal(scope, principal)
    return scope


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


async def run(
    middleware: ASGIApp,
    scope: Scope,
    body: bytes | list[bytes] = b"",
) -> list[Message]:
    """Drive ``middleware`` with ``body`` (one chunk or several) and return what it sent."""
    chunks = [body] if isinstance(body, bytes) else body
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


def rpc(method: str, params: dict[str, Any] | None = None, id: int | str = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()
