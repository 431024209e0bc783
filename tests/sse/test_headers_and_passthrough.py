from __future__ import annotations

from typing import Any

import pytest

from aimiddleware import ConfigurationError
from aimiddleware._asgi import get_header, get_headers
from aimiddleware.context import Message, Receive, Scope, Send
from aimiddleware.sse import SSEMiddleware, SSEOptions

from .. import asgi

pytestmark = pytest.mark.anyio


def http_scope(**extra: Any) -> dict[str, Any]:
    return asgi.http_scope(spec_version="2.4", **extra)


async def run(app: Any, scope: dict[str, Any] | None = None) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope or http_scope(), receive, send)
    return sent


def stream_app(headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


async def test_stream_headers_are_set_for_proxies() -> None:
    app = SSEMiddleware(
        stream_app(
            [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"content-length", b"9"),
                (b"Content-Encoding", b"identity"),
                (b"cache-control", b"public, max-age=60"),
                (b"x-custom", b"kept"),
            ]
        ),
        heartbeat=None,
    )
    sent = await run(app)
    start = sent[0]
    headers = start["headers"]
    assert get_header(headers, b"cache-control") == b"no-cache, no-transform"
    assert get_header(headers, b"x-accel-buffering") == b"no"
    assert get_header(headers, b"content-length") is None
    assert get_header(headers, b"content-encoding") is None
    assert get_header(headers, b"x-custom") == b"kept"
    assert len(get_headers(headers, b"cache-control")) == 1
    bodies = b"".join(m.get("body", b"") for m in sent[1:])
    assert bodies == b"data: 1\n\n"
    assert sent[-1]["more_body"] is False


async def test_stricter_cache_control_of_the_app_is_kept() -> None:
    app = SSEMiddleware(
        stream_app([(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]),
        heartbeat=None,
    )
    start = (await run(app))[0]
    assert get_header(start["headers"], b"cache-control") == b"no-store, no-transform"


async def test_no_connection_headers_on_http2() -> None:
    headers = [(b"content-type", b"text/event-stream"), (b"connection", b"keep-alive")]
    app = SSEMiddleware(stream_app(headers), heartbeat=None)
    on_h2 = (await run(app, http_scope(http_version="2")))[0]
    on_h1 = (await run(app, http_scope(http_version="1.1")))[0]
    assert get_header(on_h2["headers"], b"connection") is None
    assert get_header(on_h1["headers"], b"connection") == b"keep-alive"


async def test_headers_go_out_before_the_first_event() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        seen.append("app continues after start")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.start":
            assert seen == []  # passed on before the app produced anything else

    await SSEMiddleware(app, heartbeat=None)(http_scope(), receive, send)
    assert sent[0]["type"] == "http.response.start"
    # the empty body pushes the headers through outer middlewares that hold the start
    assert sent[1] == {"type": "http.response.body", "body": b"", "more_body": True}


async def test_other_responses_pass_through_unchanged() -> None:
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
    }
    body = {"type": "http.response.body", "body": b"{}", "more_body": False}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start)
        await send(body)

    sent = await run(SSEMiddleware(app))
    assert sent == [start, body]
    assert sent[0] is start  # not even copied


async def test_non_http_scopes_pass_straight_through() -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["type"])
        await send({"type": "lifespan.startup.complete"})

    sent = await run(SSEMiddleware(app), {"type": "lifespan"})
    assert calls == ["lifespan"]
    assert sent == [{"type": "lifespan.startup.complete"}]


async def test_an_inner_gzip_stream_is_decoded() -> None:
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    events = [b"data: one\n\n", b"data: two\n\n"]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"content-encoding", b"gzip"),
                ],
            }
        )
        for event in events:
            chunk = compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": compressor.flush(), "more_body": False})

    sent = await run(SSEMiddleware(app, heartbeat=None))
    assert get_header(sent[0]["headers"], b"content-encoding") is None
    bodies = [m["body"] for m in sent[1:] if m["body"]]
    assert bodies == events  # one decoded event per message, nothing held back


def test_bad_options_raise_configuration_error() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    for bad in (
        {"heartbeat": 0},
        {"heartbeat": -1.0},
        {"heartbeat": "15"},
        {"heartbeat": float("nan")},
        {"send_timeout": 0},
        {"heartbeat_comment": "two\nlines"},
        {"cancel_on_disconnect": "yes"},
        {"last_event_id": "not callable"},
    ):
        with pytest.raises(ConfigurationError):
            SSEMiddleware(app, **bad)


def test_options_can_be_one_object() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    config = SSEOptions(heartbeat=5, heartbeat_comment="ping")
    middleware = SSEMiddleware(app, config=config)
    assert middleware.config is config
    assert config.heartbeat == 5.0
    assert config.heartbeat_message["body"] == b": ping\n\n"
    assert SSEMiddleware(app, heartbeat=5, heartbeat_comment="ping").config == config
    with pytest.raises(ConfigurationError):
        SSEMiddleware(app, config=config, heartbeat=1.0)  # one place says what it does
    with pytest.raises(ConfigurationError):
        SSEOptions(send_timeout=float("inf"))


def test_repr_shows_the_options() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    text = repr(SSEMiddleware(app, heartbeat=5, send_timeout=30))
    assert "heartbeat=5.0" in text
    assert "send_timeout=30.0" in text


async def test_last_event_id_hook_can_serve_a_resumed_stream() -> None:
    seen: list[str] = []

    async def fresh(scope: Scope, receive: Receive, send: Send) -> None:
        await stream_app([(b"content-type", b"text/event-stream")])(scope, receive, send)

    async def resume(scope: Scope, last_event_id: str) -> Any:
        seen.append(last_event_id)
        if last_event_id != "41":
            return None

        async def replay(scope: Scope, receive: Receive, send: Send) -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            await send({"type": "http.response.body", "body": b"id: 42\ndata: resumed\n\n"})

        return replay

    app = SSEMiddleware(fresh, heartbeat=None, last_event_id=resume)

    def bodies(sent: list[Message]) -> bytes:
        return b"".join(m.get("body", b"") for m in sent)

    resumed = await run(app, http_scope(headers=[(b"last-event-id", b"41")]))
    assert bodies(resumed) == b"id: 42\ndata: resumed\n\n"
    assert get_header(resumed[0]["headers"], b"x-accel-buffering") == b"no"
    declined = await run(app, http_scope(headers=[(b"last-event-id", b"7")]))
    assert bodies(declined) == b"data: 1\n\n"
    without = await run(app, http_scope())
    invalid = await run(app, http_scope(headers=[(b"last-event-id", b"a\nb")]))
    assert bodies(without) == bodies(invalid) == b"data: 1\n\n"
    assert seen == ["41", "7"]  # never called without a (valid) header
