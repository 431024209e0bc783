from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from starlette.requests import Request

from aimiddleware.context import Message
from aimiddleware.normalize import NormalizeMiddleware
from aimiddleware.sse import SSEMiddleware

from ..asgi import http_scope, request_receive
from ..live import serve
from ..openai_app import DONE, chunk, streaming_app


def scope(path: str = "/v1/chat/completions") -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    return http_scope(path=path, headers=headers, spec_version="2.4")


async def drive(app: Any, path: str = "/v1/chat/completions") -> list[Message]:
    sent: list[Message] = []
    receive = request_receive(b"{}")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope(path), receive, send)
    return sent


def fails_after(events: list[bytes]) -> Any:
    async def produce(request: Request) -> AsyncIterator[bytes]:
        for event in events:
            yield event
        raise RuntimeError("CUDA out of memory at layer 7")

    return produce


@pytest.mark.anyio
async def test_a_mid_stream_failure_ends_with_an_error_chunk_and_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = NormalizeMiddleware(streaming_app(fails_after([chunk("a"), chunk("b"), chunk("c")])))
    sent = await drive(app)
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert bodies[:3] == [chunk("a"), chunk("b"), chunk("c")]
    tail = bodies[-1]
    assert sent[-1]["more_body"] is False
    error_line, done_line, rest = tail.split(b"\n\n")
    assert done_line + b"\n\n" == DONE
    assert rest == b""
    error = json.loads(error_line.removeprefix(b"data: "))["error"]
    assert error["type"] == "server_error"
    assert error["code"] == "internal_error"
    assert "CUDA" not in tail.decode()
    assert len([r for r in caplog.records if r.exc_info]) == 1


@pytest.mark.anyio
async def test_half_an_event_is_dropped_before_the_error() -> None:
    half = b'data: {"choices": [{"delta": {"content": "tru'
    app = NormalizeMiddleware(streaming_app(fails_after([chunk("a"), half])))
    sent = await drive(app)
    stream = b"".join(m["body"] for m in sent if m["type"] == "http.response.body")
    assert half not in stream
    events = stream.split(b"\n\n")
    assert events[0] + b"\n\n" == chunk("a")
    assert json.loads(events[1].removeprefix(b"data: "))["error"]["code"] == "internal_error"


@pytest.mark.anyio
async def test_an_event_split_across_chunks_is_delivered_whole() -> None:
    whole = chunk("split")

    async def produce(request: Request) -> AsyncIterator[bytes]:
        yield whole[:10]
        yield whole[10:]
        yield DONE

    sent = await drive(NormalizeMiddleware(streaming_app(produce)))
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body" and m["body"]]
    assert bodies == [whole, DONE]


@pytest.mark.anyio
async def test_other_streams_end_with_an_error_event() -> None:
    app = NormalizeMiddleware(streaming_app(fails_after([b"data: 1\n\n"]), path="/events"))
    sent = await drive(app, path="/events")
    tail = sent[-1]["body"]
    assert tail.startswith(b"event: error\ndata: ")
    assert DONE not in tail


def test_the_openai_sdk_raises_api_error_after_the_third_chunk() -> None:
    app = NormalizeMiddleware(
        SSEMiddleware(streaming_app(fails_after([chunk("one "), chunk("two "), chunk("three")])))
    )
    logging.getLogger("aimiddleware.normalize").disabled = True
    try:
        with (
            serve(app) as url,
            openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as client,
        ):
            received: list[str] = []
            stream = client.chat.completions.create(
                model="test-model", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            with pytest.raises(openai.APIError) as raised:
                received.extend(part.choices[0].delta.content or "" for part in stream)
    finally:
        logging.getLogger("aimiddleware.normalize").disabled = False
    assert received == ["one ", "two ", "three"]
    assert not isinstance(raised.value, openai.APIStatusError)
    assert raised.value.type == "server_error"
    assert raised.value.code == "internal_error"
    assert "Request id: req_" in raised.value.message


@pytest.mark.anyio
async def test_a_client_disconnect_is_not_a_server_error(caplog: pytest.LogCaptureFixture) -> None:
    from starlette.requests import ClientDisconnect

    async def produce(request: Request) -> AsyncIterator[bytes]:
        yield chunk("a")
        raise ClientDisconnect

    caplog.set_level(logging.INFO, logger="aimiddleware.normalize")
    sent = await drive(NormalizeMiddleware(streaming_app(produce)))
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body" and m["body"]]
    assert bodies == [chunk("a")]  # nothing is written to a peer that left
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert caplog.records[0].exc_info is None
