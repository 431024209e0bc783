"""ClientWatch driven message by message: a client that leaves before the answer starts cancels
the app and gets the 499 with the usage generated; nothing else is cancelled or answered."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from aimiddleware.context import annotate
from reference_app.cancel import ClientWatch, current_request

pytestmark = pytest.mark.anyio

Message = dict[str, Any]


class Client:
    """The server's side of one request: the body, then ``http.disconnect`` once ``leave()``."""

    def __init__(self) -> None:
        self.left = asyncio.Event()
        self.sent: list[Message] = []
        self._body_read = False

    async def receive(self) -> Message:
        if not self._body_read:
            self._body_read = True
            return {"type": "http.request", "body": b"{}", "more_body": False}
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def scope(path: str = "/v1/chat/completions") -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "headers": []}


class Generating:
    """An app that reads its body, counts tokens on the request's ticket, and answers once
    ``finish`` is set; it records whether it was cancelled."""

    def __init__(self) -> None:
        self.finish = asyncio.Event()
        self.generating = asyncio.Event()
        self.cancelled = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        ticket = current_request()
        assert ticket is not None
        ticket.prompt_tokens, ticket.completion_tokens = 12, 3
        self.generating.set()
        try:
            await self.finish.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})


async def test_a_client_that_leaves_cancels_the_app_and_gets_499_with_the_usage() -> None:
    app, client = Generating(), Client()
    call = asyncio.ensure_future(
        ClientWatch(app, default_tier="human")(scope(), client.receive, client.send)
    )
    await app.generating.wait()
    client.left.set()
    await call
    assert app.cancelled
    start, body = client.sent
    assert start["status"] == 499
    payload = json.loads(body["body"])
    assert payload["error"]["code"] == "client_closed_request"
    assert payload["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


async def test_an_answer_that_completes_is_not_touched() -> None:
    app, client = Generating(), Client()
    app.finish.set()
    await ClientWatch(app, default_tier="human")(scope(), client.receive, client.send)
    assert not app.cancelled
    assert [m.get("status") for m in client.sent] == [200, None]


async def test_a_request_claimed_under_an_idempotency_key_is_never_cancelled() -> None:
    app, client = Generating(), Client()
    claimed = scope()
    annotate(claimed, "aimiddleware.idempotency.outcome", "claimed")
    call = asyncio.ensure_future(
        ClientWatch(app, default_tier="human")(claimed, client.receive, client.send)
    )
    await app.generating.wait()
    client.left.set()
    await asyncio.sleep(0.01)  # the disconnect is there to read: nobody acts on it
    app.finish.set()
    await call
    assert not app.cancelled
    assert client.sent[0]["status"] == 200


async def test_a_cancellation_from_outside_goes_on_up() -> None:
    app, client = Generating(), Client()
    call = asyncio.ensure_future(
        ClientWatch(app, default_tier="human")(scope(), client.receive, client.send)
    )
    await app.generating.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert app.cancelled
    assert client.sent == []


async def test_the_tier_reaches_the_engine_and_embeddings_are_not_watched() -> None:
    seen: list[str | None] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        ticket = current_request()
        seen.append(ticket.tier if ticket is not None else None)

    limited = scope()
    annotate(limited, "aimiddleware.ratelimit.tier", "agent")
    watch = ClientWatch(app, default_tier="human")
    await watch(limited, Client().receive, Client().send)
    await watch(scope(), Client().receive, Client().send)
    await watch(scope("/v1/embeddings"), Client().receive, Client().send)
    assert seen == ["agent", "human", None]
