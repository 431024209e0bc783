"""A Responses API stream: its typed events pass untouched, and a failure after it started ends
it with the Responses API's own ``error`` event, numbered after the last event sent."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from aimiddleware._asgi import Message
from aimiddleware.normalize import NormalizeMiddleware
from aimiddleware.sse import SSEMiddleware
from testkit.responses_app import RESPONSES_PATH, response_events, responses_app

from ..asgi import http_scope, request_receive
from ..live import serve

STREAM = json.dumps({"model": "m", "input": "hi", "stream": True}).encode()


async def drive(app: NormalizeMiddleware, body: bytes = STREAM) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json")]
    await app(http_scope(path=RESPONSES_PATH, headers=headers), request_receive(body), send)
    return sent


def bodies(sent: list[Message]) -> list[bytes]:
    return [m["body"] for m in sent if m["type"] == "http.response.body" and m.get("body")]


@pytest.fixture
def quiet() -> Iterator[None]:
    """The failures here are the point: their log lines are asserted elsewhere."""
    logger = logging.getLogger("aimiddleware.normalize")
    logger.disabled = True
    yield
    logger.disabled = False


@pytest.mark.anyio
async def test_typed_events_pass_untouched() -> None:
    sent = await drive(NormalizeMiddleware(SSEMiddleware(responses_app(split=True))))
    assert b"".join(bodies(sent)) == b"".join(response_events(["Hel", "lo", "!"], id="resp_1"))
    assert sent[-1]["more_body"] is False


@pytest.mark.anyio
@pytest.mark.parametrize("split", [False, True], ids=["whole", "half-an-event-sent"])
async def test_a_failure_ends_the_stream_with_the_error_event(quiet: None, split: bool) -> None:
    # created, in progress, item added, part added, one delta: five events, then the failure
    app = NormalizeMiddleware(responses_app(fail_after=5, split=split))
    sent = await drive(app)

    expected = response_events(["Hel", "lo", "!"], id="resp_1")[:5]
    *events, tail = bodies(sent)
    assert b"".join(events) == b"".join(expected)  # half of the sixth event never went out
    assert sent[-1]["more_body"] is False
    head, data = tail.removesuffix(b"\n\n").split(b"\n")
    assert head == b"event: error"
    error = json.loads(data.removeprefix(b"data: "))
    assert error["type"] == "error"
    assert error["code"] == "internal_error"
    assert error["param"] is None
    assert "Request id: req_" in error["message"]
    assert "crashed" not in error["message"]  # nothing of the exception reaches the client
    assert error["sequence_number"] == 5
    assert b"[DONE]" not in tail


@pytest.mark.anyio
async def test_a_failure_before_any_event_is_numbered_zero(quiet: None) -> None:
    sent = await drive(NormalizeMiddleware(responses_app(fail_after=0)))
    (tail,) = bodies(sent)
    assert json.loads(tail.split(b"data: ")[1])["sequence_number"] == 0


def test_the_openai_sdk_reads_the_error_event(quiet: None) -> None:
    app = NormalizeMiddleware(SSEMiddleware(responses_app(deltas=["one ", "two"], fail_after=6)))
    with (
        serve(app) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as client,
    ):
        received = list(client.responses.create(model="m", input="hi", stream=True))
    kinds = [event.type for event in received]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "error",
    ]
    error = received[-1]
    assert error.type == "error"
    assert error.code == "internal_error"
    assert error.sequence_number == 6
    assert [event.sequence_number for event in received] == list(range(7))


@pytest.mark.anyio
async def test_a_404_is_an_unknown_model_on_create_and_an_unknown_response_on_read() -> None:
    async def missing(scope: Any, receive: Any, send: Any) -> None:
        body = b'{"detail": "Not Found"}'
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    app = NormalizeMiddleware(missing)
    created = await drive(app)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(http_scope("GET", RESPONSES_PATH + "/resp_x"), request_receive(), send)

    error = json.loads(b"".join(bodies(created)))["error"]
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert json.loads(b"".join(bodies(sent)))["error"]["code"] == "not_found"
