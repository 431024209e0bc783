"""An authenticated stream passes through untouched: no buffering, no delayed start."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from aimiddleware.oauth import OAuthMiddleware

from .apps import RESOURCE
from .issuer import Issuer

pytestmark = pytest.mark.anyio


async def test_event_stream_start_and_chunks_are_not_held_back(issuer: Issuer) -> None:
    release = anyio.Event()
    first_event_out = anyio.Event()
    sent: list[dict[str, Any]] = []

    async def sse_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await release.wait()  # the model is still generating
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    mw = OAuthMiddleware(sse_app, resource=RESOURCE, issuer=issuer.url, jwks=issuer.jwks())
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {issuer.mint()}".encode())],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(sent) == 2:
            first_event_out.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(mw, scope, receive, send)
        with anyio.fail_after(5):
            await first_event_out.wait()
        # the start and the first event reached the client while the stream is still open
        assert sent[0]["type"] == "http.response.start"
        assert sent[1]["body"] == b"data: 1\n\n"
        release.set()
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", b"data: [DONE]\n\n"]
    assert sent[0]["headers"] == [(b"content-type", b"text/event-stream")]
