"""Hostile and broken input through the full stack over a real socket: each gets a clear error
quickly, and the worker stays healthy for the next caller."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import Reporter, is_envelope, scale
from .stack import MODEL, Stack, serve_stack

pytestmark = [pytest.mark.model, pytest.mark.e2e]


BODY_LIMIT = 1024 * 1024  # the reference app's defaults
HEADER_LIMIT = 32 * 1024
# short enough for a test to wait out, long enough for the trickled upload below to finish
BODY_TIMEOUT = scale(3.0, 6.0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serve_stack(
        tmp_path_factory.mktemp("bad-input"), request_body_timeout=BODY_TIMEOUT
    ) as running:
        yield running


def raw_request(stack: Stack, head: bytes, token: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", stack.server.port), timeout=30)
    sock.sendall(
        head.replace(b"\r\n\r\n", b"\r\nAuthorization: " + token.encode() + b"\r\n\r\n", 1)
    )
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], Any, bool]:
    """Status, headers, JSON body, and whether the server then closed the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    closed = False
    try:
        closed = sock.recv(65536) == b""
    except ConnectionResetError:
        closed = True
    return int(lines[0].split()[1]), headers, json.loads(body), closed


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    token = stack.token("--scope", "chat models:read", "--tier", "agent")
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as c:
        yield c


BAD_BODIES = {
    "invalid UTF-8": b'{"model":"m","messages":[{"role":"user","content":"\xff\xfe\xc3"}]}',
    "deeply nested array": b"[" * 200_000 + b"]" * 200_000,
    "deeply nested messages": b'{"model":"%s","messages":' % MODEL.encode()
    + b"[" * 20_000
    + b"]" * 20_000
    + b"}",
    "deeply nested object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "truncated JSON": b'{"model":"m","messages":[{"role":',
    "not JSON": b"\x00\x01\x02 definitely not json",
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_a_broken_body_gets_a_clear_error_quickly(
    name: str, stack: Stack, client: httpx.Client, report: Reporter
) -> None:
    started = time.monotonic()
    response = client.post("/v1/chat/completions", content=BAD_BODIES[name])
    elapsed = time.monotonic() - started
    report("status", response.status_code)
    report("seconds", round(elapsed, 3), "s")
    assert response.status_code in (400, 422)
    assert is_envelope(response.json())
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert elapsed < 2.0
    assert stack.health()["status"] == "ok"


def test_huge_headers_get_431_and_do_not_hurt_the_worker(
    stack: Stack, client: httpx.Client, report: Reporter
) -> None:
    started = time.monotonic()
    response = client.get("/v1/models", headers={"x-padding": "a" * 200_000})
    report("status", response.status_code)
    report("seconds", round(time.monotonic() - started, 3), "s")
    assert response.status_code == 431
    assert response.headers["connection"] == "close"
    assert is_envelope(response.json())
    assert response.json()["error"]["code"] == "request_header_fields_too_large"
    # under the header limit: an oversized Idempotency-Key gets the idempotency layer's 400
    response = client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1},
        headers={"idempotency-key": "k" * 10_000},
    )
    assert response.status_code == 400
    assert is_envelope(response.json())
    assert client.get("/v1/models", headers={"x-padding": "a" * 20_000}).status_code == 200
    assert stack.health()["status"] == "ok"


def test_an_oversized_body_is_refused_before_it_is_sent(
    stack: Stack, client: httpx.Client, report: Reporter
) -> None:
    seen = stack.counted.seen.get("/v1/chat/completions", 0)
    started = time.monotonic()
    # only the head goes out: the answer cannot wait for a body that never comes
    sock = raw_request(
        stack,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 20000000\r\n\r\n",
        client.headers["authorization"],
    )
    with sock:
        status, headers, body, closed = read_answer(sock)
    elapsed = time.monotonic() - started
    report("status", status)
    report("seconds", round(elapsed, 3), "s")
    assert status == 413
    assert is_envelope(body)
    assert body["error"]["code"] == "request_too_large"
    assert headers["connection"] == "close"
    assert closed
    assert elapsed < 1.0
    assert stack.counted.seen.get("/v1/chat/completions", 0) == seen + 1
    assert stack.health()["status"] == "ok"


def test_a_chunked_body_is_refused_as_it_crosses_the_limit(
    stack: Stack, client: httpx.Client, report: Reporter
) -> None:
    sock = raw_request(
        stack,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        client.headers["authorization"],
    )
    piece = b'{"model":"' + b"a" * 65_000
    sent = 0
    started = time.monotonic()
    with sock:
        # until the answer is there (or well past the limit, which would fail below)
        try:
            while sent < 4 * BODY_LIMIT and not select.select([sock], [], [], 0.005)[0]:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, body, _ = read_answer(sock)
    report("bytes sent before the refusal", sent)
    report("seconds", round(time.monotonic() - started, 3), "s")
    assert status == 413
    assert is_envelope(body)
    assert headers["connection"] == "close"
    # what crossed the limit, plus what the kernel's socket buffers took before the answer
    assert BODY_LIMIT < sent < 2 * BODY_LIMIT
    assert stack.health()["status"] == "ok"


def test_a_stalled_upload_gets_408_at_the_body_timeout(
    stack: Stack, client: httpx.Client, report: Reporter
) -> None:
    sock = raw_request(
        stack,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n",
        client.headers["authorization"],
    )
    with sock:
        sock.sendall(b'{"model":"')
        started = time.monotonic()
        status, headers, body, closed = read_answer(sock)
    elapsed = time.monotonic() - started
    report("status", status)
    report("seconds", round(elapsed, 3), "s")
    report("body timeout", BODY_TIMEOUT, "s")
    assert status == 408
    assert is_envelope(body)
    assert body["error"]["code"] == "request_timeout"
    assert headers["connection"] == "close"
    assert closed
    assert BODY_TIMEOUT - 0.1 <= elapsed <= BODY_TIMEOUT * 1.1 + 0.5
    assert stack.health()["status"] == "ok"


def test_a_slow_upload_does_not_block_other_callers(
    stack: Stack, client: httpx.Client, report: Reporter
) -> None:
    token = client.headers["authorization"]
    body = b'{"model":"%s","messages":[{"role":"user","content":"Hi"}],"max_tokens":1}' % (
        MODEL.encode()
    )
    pieces = scale(10, 40)
    step = len(body) // pieces + 1
    answer: list[bytes] = []

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", stack.server.port), timeout=60) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nConnection: close\r\n"
                b"Authorization: " + token.encode() + b"\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            for start in range(0, len(body), step):
                sock.sendall(body[start : start + step])
                time.sleep(0.1)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            answer.append(data)

    uploader = threading.Thread(target=trickle)
    uploader.start()
    latencies = []
    while uploader.is_alive() and len(latencies) < 200:
        started = time.monotonic()
        assert client.get("/v1/models").status_code == 200
        latencies.append(time.monotonic() - started)
        time.sleep(0.05)
    uploader.join(60)
    report("requests served during the upload", len(latencies))
    report("max latency during the upload", round(max(latencies), 3), "s")
    assert len(latencies) >= 5
    assert max(latencies) < 1.0
    assert answer
    assert answer[0].startswith(b"HTTP/1.1 200")
