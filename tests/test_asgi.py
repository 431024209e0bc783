"""The shared ASGI plumbing, driven message by message."""

from __future__ import annotations

from typing import Any

import pytest

from aimiddleware._asgi import (
    ResponseWatcher,
    add_header,
    get_header,
    get_headers,
    is_event_stream,
    media_type,
    remove_headers,
    send_json,
    set_header,
)
from aimiddleware.context import (
    ClientDisconnected,
    Message,
    RequestBodyTooLarge,
    json_body,
    read_body,
    replace_body,
)

pytestmark = pytest.mark.anyio


def receiver(*messages: Message) -> Any:
    queue = list(messages)
    calls = {"n": 0}

    async def receive() -> Message:
        calls["n"] += 1
        if queue:
            return queue.pop(0)
        return {"type": "http.disconnect"}

    receive.calls = calls  # type: ignore[attr-defined]
    return receive


def test_header_lookup_is_case_insensitive_and_ordered() -> None:
    headers = [(b"X-A", b"1"), (b"x-b", b"2"), (b"x-a", b"3")]
    assert get_header(headers, b"x-a") == b"1"
    assert get_headers(headers, b"x-a") == [b"1", b"3"]
    assert get_header(headers, b"x-missing") is None


def test_set_add_remove_headers_on_a_start_message() -> None:
    message: Message = {"type": "http.response.start", "status": 200, "headers": ((b"X-A", b"1"),)}
    set_header(message, b"x-a", b"2")
    add_header(message, b"vary", b"accept")
    add_header(message, b"vary", b"origin")
    assert message["headers"] == [(b"x-a", b"2"), (b"vary", b"accept"), (b"vary", b"origin")]
    remove_headers(message, b"vary")
    assert message["headers"] == [(b"x-a", b"2")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"text/event-stream", "text/event-stream"),
        (b"Text/Event-Stream; charset=utf-8", "text/event-stream"),
        (b"application/json;charset=UTF-8", "application/json"),
        (b"", ""),
        (None, ""),
    ],
)
def test_media_type_ignores_parameters_and_case(value: bytes | None, expected: str) -> None:
    assert media_type(value) == expected


def test_is_event_stream() -> None:
    assert is_event_stream([(b"content-type", b"text/event-stream; charset=utf-8")])
    assert not is_event_stream([(b"content-type", b"application/json")])
    assert not is_event_stream([])


async def test_response_watcher_records_what_went_out() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    watcher = ResponseWatcher(send)
    assert not watcher.started
    start = {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"text/event-stream")]}  # fmt: skip
    await watcher(start)
    assert (watcher.started, watcher.status, watcher.event_stream) == (True, 200, True)
    await watcher({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    assert not watcher.complete
    await watcher({"type": "http.response.body", "body": b"", "more_body": False})
    assert watcher.complete
    assert len(sent) == 3
    assert sent[0] is start


async def test_send_json_sets_length_and_type() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await send_json(send, 409, {"error": "é"}, [(b"retry-after", b"1")])
    assert sent[0]["status"] == 409
    body = sent[1]["body"]
    headers = dict(sent[0]["headers"])
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"retry-after"] == b"1"
    assert body.decode() == '{"error":"é"}'


async def test_read_body_joins_chunks_and_replays_once_then_defers() -> None:
    receive = receiver(
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b" 1}", "more_body": False},
    )
    scope: dict[str, Any] = {"type": "http"}
    body, replay = await read_body(scope, receive)
    assert body == b'{"a": 1}'
    assert await replay() == {"type": "http.request", "body": body, "more_body": False}
    assert (await replay())["type"] == "http.disconnect"  # the real receive again


async def test_read_body_is_read_once_per_request() -> None:
    receive = receiver({"type": "http.request", "body": b"x", "more_body": False})
    scope: dict[str, Any] = {"type": "http"}
    first, replay = await read_body(scope, receive)
    second, again = await read_body(scope, replay)
    assert first is second
    assert again is replay
    assert receive.calls["n"] == 1


async def test_read_body_limit() -> None:
    receive = receiver(
        {"type": "http.request", "body": b"x" * 60, "more_body": True},
        {"type": "http.request", "body": b"x" * 60, "more_body": True},
        {"type": "http.request", "body": b"x" * 60, "more_body": False},
    )
    with pytest.raises(RequestBodyTooLarge):
        await read_body({"type": "http"}, receive, limit=100)
    assert receive.calls["n"] == 2  # stopped reading as soon as the limit was passed


async def test_read_body_disconnect() -> None:
    receive = receiver({"type": "http.request", "body": b"x", "more_body": True})
    with pytest.raises(ClientDisconnected):
        await read_body({"type": "http"}, receive)


async def test_json_body_parses_once_and_tolerates_garbage() -> None:
    scope: dict[str, Any] = {"type": "http"}
    assert json_body(scope) is None  # not read yet
    await read_body(scope, receiver({"type": "http.request", "body": b'{"model": "m"}'}))
    parsed = json_body(scope)
    assert parsed == {"model": "m"}
    assert json_body(scope) is parsed
    bad: dict[str, Any] = {"type": "http"}
    await read_body(bad, receiver({"type": "http.request", "body": b"\xff{not json"}))
    assert json_body(bad) is None
    deep: dict[str, Any] = {"type": "http"}
    await read_body(deep, receiver({"type": "http.request", "body": b"[" * 100_000}))
    assert json_body(deep) is None


def test_request_id_reuses_a_sane_caller_id_and_generates_one_otherwise() -> None:
    import re

    from aimiddleware.context import request_id

    given: dict[str, object] = {"headers": [(b"x-request-id", b"agent-7.step-3")]}
    assert request_id(given) == "agent-7.step-3"
    assert request_id(given) == "agent-7.step-3"  # computed once, then shared
    generated = set()
    for bad in (b"", b"has space", b"x" * 129, "é".encode()):
        scope: dict[str, object] = {"headers": [(b"x-request-id", bad)]}
        value = request_id(scope)
        assert re.fullmatch(r"req_[0-9a-f]{32}", value)
        assert request_id(scope) == value
        generated.add(value)
    assert len(generated) == 4


async def test_replace_body_changes_what_the_app_reads_not_the_shared_body() -> None:
    receive = receiver({"type": "http.request", "body": b'{"stream": true}', "more_body": False})
    scope: dict[str, Any] = {"type": "http"}
    _, replay = await read_body(scope, receive)
    assert json_body(scope) == {"stream": True}
    inner = await replace_body(replay, b'{"stream": false}')
    # outer middlewares keep the request as sent (fingerprints, logs)
    assert json_body(scope) == {"stream": True}
    assert await inner() == {
        "type": "http.request",
        "body": b'{"stream": false}',
        "more_body": False,
    }
    assert (await inner())["type"] == "http.disconnect"  # then the real receive
    assert receive.calls["n"] == 2  # the original body was read once, never replayed twice
