from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aimiddleware import ConfigurationError, RequestGuardMiddleware, _config
from aimiddleware.context import Message
from aimiddleware.guard import GuardOptions

from ..asgi import http_scope
from ..servers import ThreadedServer

KEYS = {"message", "type", "param", "code"}


# -- a raw HTTP/1.1 client: the guard's behaviour depends on what is (not) on the wire --------


def connect(server: ThreadedServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response; the body by Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


def envelope(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    payload = json.loads(body)
    assert set(payload) == {"error"}
    assert set(payload["error"]) >= KEYS
    return payload["error"]  # type: ignore[no-any-return]


class Seen:
    """What the app behind the guard received."""

    def __init__(self) -> None:
        self.bytes = 0
        self.calls = 0
        self.disconnected = False


def upload_app(seen: Seen) -> Starlette:
    async def upload(request: Request) -> Response:
        seen.calls += 1
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                seen.bytes += len(chunk)
        except ClientDisconnect:
            seen.disconnected = True
            raise
        return JSONResponse({"received": received})

    return Starlette(routes=[Route("/upload", upload, methods=["POST", "GET"])])


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def server(seen: Seen) -> Iterator[ThreadedServer]:
    app = RequestGuardMiddleware(
        upload_app(seen), max_request_bytes=4096, body_timeout=1.0, max_header_bytes=8192
    )
    with ThreadedServer(app) as running:
        yield running


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"max_request_bytes": 0},
        {"max_request_bytes": True},
        {"max_request_bytes": 1.5},
        {"max_header_bytes": 100},
        {"body_timeout": 0},
        {"body_timeout": -1.0},
        {"body_timeout": float("inf")},
        {"body_timeout": float("nan")},
        {"body_timeout": "10"},
        {"problem_type_base": 3},
    ],
)
def test_bad_options_raise_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RequestGuardMiddleware(Starlette(), **options)


def test_max_body_bytes_is_the_old_name_of_max_request_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_config, "_WARNED", set())
    with pytest.warns(DeprecationWarning, match="max_request_bytes"):
        guard = RequestGuardMiddleware(Starlette(), max_body_bytes=100)
    assert guard.config.max_request_bytes == 100
    assert guard.max_body_bytes == guard.max_request_bytes == 100
    # once per process: the second use is quiet (warnings are errors in this suite)
    assert RequestGuardMiddleware(Starlette(), max_body_bytes=200).max_request_bytes == 200


def test_the_new_name_does_not_warn_and_both_names_at_once_is_an_error() -> None:
    guard = RequestGuardMiddleware(Starlette(), max_request_bytes=100)  # errors on any warning
    assert guard.config == GuardOptions(max_request_bytes=100)
    with pytest.raises(ConfigurationError, match="max_request_bytes"):
        RequestGuardMiddleware(Starlette(), max_body_bytes=100, max_request_bytes=100)


def test_options_can_be_one_object() -> None:
    config = GuardOptions(max_request_bytes=10, body_timeout=5, max_header_bytes=None)
    guard = RequestGuardMiddleware(Starlette(), config=config)
    assert guard.config is config
    assert (guard.body_timeout, guard.max_header_bytes) == (5.0, None)
    with pytest.raises(ConfigurationError):
        RequestGuardMiddleware(Starlette(), config=config, body_timeout=1.0)


def test_repr_names_the_limits() -> None:
    guard = RequestGuardMiddleware(Starlette(), max_request_bytes=10, body_timeout=None)
    assert repr(guard) == (
        "RequestGuardMiddleware(max_request_bytes=10, body_timeout=None, max_header_bytes=65536)"
    )


# -- over a real socket ------------------------------------------------------------------------


def test_declared_length_over_the_limit_is_refused_before_any_body_byte(
    server: ThreadedServer, seen: Seen
) -> None:
    with connect(server) as sock:
        # only the head is sent: the answer must not wait for a body
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )
        started = time.monotonic()
        status, headers, body = read_response(sock)
        elapsed = time.monotonic() - started
        assert status == 413
        assert headers["connection"] == "close"
        assert headers["x-request-id"].startswith("req_")
        error = envelope(headers, body)
        assert error["code"] == "request_too_large"
        assert error["type"] == "invalid_request_error"
        assert "4096 bytes" in error["message"]
        assert elapsed < 0.5  # not after the 1 s body timeout: nothing was read
        assert closed_by_server(sock)
    assert seen.calls == 0


def test_chunked_body_is_refused_as_it_crosses_the_limit(
    server: ThreadedServer, seen: Seen
) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 1000
        for _ in range(5):  # 5,000 bytes: the fifth chunk crosses 4,096
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            time.sleep(0.05)
        # the answer arrives while the body is still open (no terminating chunk sent)
        status, headers, body = read_response(sock)
        assert status == 413
        assert headers["connection"] == "close"
        assert envelope(headers, body)["code"] == "request_too_large"
        assert closed_by_server(sock)
    assert seen.calls == 1
    assert seen.bytes == 4000  # every chunk below the limit, never the one that crossed it
    assert seen.disconnected


def test_chunked_body_under_the_limit_reaches_the_app(server: ThreadedServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4):
            sock.sendall(b"400\r\n" + b"y" * 1024 + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 200
    assert json.loads(body) == {"received": 4096}
    assert "connection" not in headers


def test_slow_upload_gets_408_at_the_body_timeout(server: ThreadedServer, seen: Seen) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        started = time.monotonic()
        status, headers, body = read_response(sock)
        elapsed = time.monotonic() - started
        assert status == 408
        assert headers["connection"] == "close"
        error = envelope(headers, body)
        assert error["code"] == "request_timeout"
        assert 0.9 <= elapsed < 1.5
        assert closed_by_server(sock)
    assert seen.bytes == 10


def test_keep_alive_survives_an_accepted_body(server: ThreadedServer) -> None:
    with connect(server) as sock:
        for _ in range(2):
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            status, _, body = read_response(sock)
            assert status == 200
            assert json.loads(body) == {"received": 5}


def test_huge_headers_get_431(server: ThreadedServer, seen: Seen) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /upload HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 431
    assert headers["connection"] == "close"
    assert envelope(headers, body)["code"] == "request_header_fields_too_large"
    assert seen.calls == 0


def test_refusal_is_a_problem_document_when_accept_prefers_it(
    server: ThreadedServer,
) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nAccept: application/problem+json\r\n"
            b"X-Request-Id: abc-1\r\nContent-Length: 5000\r\n\r\n"
        )
        status, headers, body = read_response(sock)
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == 413
    assert problem["code"] == "request_too_large"
    assert problem["request_id"] == "abc-1"
    assert headers["x-request-id"] == "abc-1"


def test_waiting_for_a_disconnect_after_the_body_is_not_timed() -> None:
    async def slow_stream(request: Request) -> Response:
        await request.body()

        async def events() -> AsyncIterator[bytes]:
            for i in range(6):  # 1.2 s, longer than the 0.3 s body timeout
                await asyncio.sleep(0.2)
                yield b"data: %d\n\n" % i

        return StreamingResponse(events(), media_type="text/event-stream")

    app = RequestGuardMiddleware(
        Starlette(routes=[Route("/s", slow_stream, methods=["POST"])]), body_timeout=0.3
    )
    with ThreadedServer(app) as running, connect(running) as sock:
        sock.sendall(
            b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert data.count(b"data: ") == 6


# -- at the ASGI level: what the app is shown, what reaches the server -------------------------


async def drive(
    app: Any, messages: list[Message], headers: list[tuple[bytes, bytes]]
) -> tuple[list[Message], int]:
    """Run one request; returns what was sent and how many messages were read."""
    sent: list[Message] = []
    queue = list(messages)
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(http_scope("POST", "/", headers), receive, send)
    return sent, reads


@pytest.mark.anyio
async def test_app_sees_a_disconnect_and_its_later_sends_are_dropped() -> None:
    shown: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            shown.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        # an app that ignores the disconnect and answers anyway
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    body = [
        {"type": "http.request", "body": b"a" * 60, "more_body": True},
        {"type": "http.request", "body": b"b" * 60, "more_body": True},
        {"type": "http.request", "body": b"c", "more_body": False},
    ]
    guard = RequestGuardMiddleware(app, max_request_bytes=100)
    sent, reads = await drive(guard, body, [(b"transfer-encoding", b"chunked")])
    assert [m["type"] for m in shown] == ["http.request", "http.disconnect"]
    assert reads == 2  # the rest of the body is never read
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_too_large"


@pytest.mark.anyio
async def test_a_response_already_started_stands() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        message = await receive()
        while message["type"] == "http.request" and message.get("more_body"):
            message = await receive()
        assert message["type"] == "http.disconnect"
        await send({"type": "http.response.body", "body": b"partial"})

    body = [
        {"type": "http.request", "body": b"a" * 80, "more_body": True},
        {"type": "http.request", "body": b"b" * 80, "more_body": True},
    ]
    guard = RequestGuardMiddleware(app, max_request_bytes=100)
    sent, _ = await drive(guard, body, [(b"transfer-encoding", b"chunked")])
    assert [m.get("status") for m in sent] == [202, None]
    assert sent[1]["body"] == b"partial"


@pytest.mark.anyio
async def test_requests_without_a_body_pass_untouched() -> None:
    received: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append(receive)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard = RequestGuardMiddleware(app)
    for headers in ([], [(b"content-length", b"0")]):
        sent, _ = await drive(guard, [], headers)
        assert sent[0]["status"] == 204
    # no wrapper was put in front of the server's receive
    assert all(getattr(r, "__self__", None) is None for r in received)


@pytest.mark.anyio
async def test_non_http_scopes_pass_through() -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    async def nothing() -> Message:
        return {"type": "lifespan.startup"}

    async def ignore(message: Message) -> None:
        return None

    await RequestGuardMiddleware(app, max_header_bytes=1024)(
        {"type": "lifespan", "headers": [(b"x", b"y" * 5000)]}, nothing, ignore
    )
    assert calls == ["lifespan"]


@pytest.mark.anyio
async def test_a_stalled_read_in_another_task_is_the_one_interrupted() -> None:
    shown: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def rest() -> None:
            while True:
                message = await receive()
                shown.append(message["type"])
                if message["type"] == "http.disconnect" or not message.get("more_body"):
                    return

        await asyncio.create_task(rest())  # this task is never cancelled: it finishes
        shown.append("app finished")

    body = [{"type": "http.request", "body": b"a", "more_body": True}]  # then nothing comes
    guard = RequestGuardMiddleware(app, body_timeout=0.2)
    started = time.monotonic()
    sent, _ = await drive(guard, body, [(b"content-length", b"10")])
    assert time.monotonic() - started < 1.0
    assert shown == ["http.request", "http.disconnect", "app finished"]
    assert sent[0]["status"] == 408


@pytest.mark.anyio
async def test_a_client_gone_before_its_body_is_a_disconnect_for_the_app() -> None:
    shown: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        shown.append(await receive())
        shown.append(await receive())  # later reads reach the server again

    guard = RequestGuardMiddleware(app, body_timeout=5.0)
    gone: Message = {"type": "http.disconnect"}
    sent, reads = await drive(guard, [gone, gone], [(b"transfer-encoding", b"chunked")])
    assert shown == [gone, gone]
    assert (sent, reads) == ([], 2)


@pytest.mark.anyio
async def test_a_body_read_whole_at_first_is_replayed_to_the_app() -> None:
    shown: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        shown.append(await receive())

    guard = RequestGuardMiddleware(app, max_request_bytes=10, body_timeout=5.0)
    first: Message = {"type": "http.request", "body": b"0123456789", "more_body": False}
    await drive(guard, [first], [(b"transfer-encoding", b"chunked")])
    assert shown == [first]
