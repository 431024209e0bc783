"""Retry signals clients obey: every 429 and 503 of the library carries ``Retry-After`` and
``retry-after-ms`` that name the same moment (and the moment the RateLimit fields name), and
``x-should-retry``; the real ``openai`` SDK's retry loop honours them over a real socket."""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aimiddleware.context import ASGIApp, Message, Receive, Scope, Send
from aimiddleware.errors import ErrorInfo, retry_headers, send_error
from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.ratelimit import Budget, Price, PriceTable, RateLimitMiddleware, Tier
from reference_app.engine import QueueFull
from reference_app.errors import model_loading, overloaded, retry_signals

from .idempotency.helpers import Counter, call, chat_app
from .oauth.apps import bearer, client_for, middleware
from .oauth.issuer import Issuer, serving
from .servers import ThreadedServer, dead_port

pytestmark = pytest.mark.anyio

USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def chat_completion_app() -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1700000000,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": USAGE,
            }
        )

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def limited(app: ASGIApp | None = None, **tier: Any) -> RateLimitMiddleware:
    # the moving window names the exact moment the oldest request leaves it
    return RateLimitMiddleware(
        app or chat_completion_app(),
        tiers=[Tier("t", **tier)],
        default_tier="t",
        strategy="moving-window",
    )


def chat(max_tokens: int = 10) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}


def assert_agree(headers: httpx.Headers | dict[str, str], should_retry: bool) -> int:
    """The three signals agree; returns the wait in milliseconds."""
    ms = int(headers["retry-after-ms"])
    assert int(headers["retry-after"]) == math.ceil(ms / 1000)
    assert headers["x-should-retry"] == ("true" if should_retry else "false")
    return ms


def test_retry_headers_round_up_to_the_millisecond_and_the_second() -> None:
    assert retry_headers(0.3) == [(b"retry-after", b"1"), (b"retry-after-ms", b"300")]
    assert retry_headers(2.0001, False) == [
        (b"retry-after", b"3"),
        (b"retry-after-ms", b"2001"),
        (b"x-should-retry", b"false"),
    ]
    assert retry_headers(0) == [(b"retry-after", b"0"), (b"retry-after-ms", b"0")]
    assert retry_headers(None) == []


async def test_send_error_writes_the_signals_an_error_carries() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "http", "method": "GET", "headers": []}
    info = ErrorInfo(503, "down", retry_after=1.5, should_retry=True)
    await send_error(send, scope, info)
    headers = dict(sent[0]["headers"])
    assert headers[b"retry-after"] == b"2"
    assert headers[b"retry-after-ms"] == b"1500"
    assert headers[b"x-should-retry"] == b"true"
    await send_error(send, scope, ErrorInfo(400, "bad"))
    assert b"retry-after" not in dict(sent[2]["headers"])


# -- the rate limiter ------------------------------------------------------------------------


async def test_a_429_on_a_window_agrees_with_the_ratelimit_fields() -> None:
    app = limited(requests="1 per 2 seconds")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        assert (await http.post("/v1/chat/completions", json=chat())).status_code == 200
        refused = await http.post("/v1/chat/completions", json=chat())
    assert refused.status_code == 429
    ms = assert_agree(refused.headers, should_retry=True)
    assert 0 < ms <= 2000
    # RateLimit: "requests";r=0;t=<Retry-After>
    t = re.search(r'"requests";r=0;t=(\d+)', refused.headers["ratelimit"])
    assert t is not None
    assert t.group(1) == refused.headers["retry-after"]
    assert refused.headers["x-ratelimit-reset-requests"] == f"{refused.headers['retry-after']}s"


async def test_a_request_larger_than_the_whole_token_quota_says_do_not_retry() -> None:
    app = limited(tokens="100 per minute")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        refused = await http.post("/v1/chat/completions", json=chat(max_tokens=500))
    assert refused.status_code == 429
    assert refused.json()["error"]["message"].startswith("Request too large")
    assert_agree(refused.headers, should_retry=False)


async def test_a_concurrency_429_and_the_store_503_say_retry_in_a_second() -> None:
    gate = asyncio.Event()
    inner = chat_completion_app()

    async def blocking(scope: Scope, receive: Receive, send: Send) -> None:
        await gate.wait()  # holds the only slot until the second request was refused
        await inner(scope, receive, send)

    app = limited(blocking, concurrency=1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        first = asyncio.ensure_future(http.post("/v1/chat/completions", json=chat()))
        await asyncio.sleep(0.05)  # the first holds the slot
        busy = await http.post("/v1/chat/completions", json=chat())
        gate.set()
        assert (await first).status_code == 200
    assert busy.status_code == 429
    assert assert_agree(busy.headers, should_retry=True) == 1000

    with dead_port() as port:
        down = RateLimitMiddleware(
            chat_completion_app(),
            tiers=[Tier("t", requests="5/minute")],
            store=f"redis://127.0.0.1:{port}/0",
            timeout=0.3,
            on_store_error="closed",
        )
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=down), base_url="http://test"
            ) as http:
                unavailable = await http.post("/v1/chat/completions", json=chat())
        finally:
            await down.aclose()
    assert unavailable.status_code == 503
    assert assert_agree(unavailable.headers, should_retry=True) == 1000


# -- idempotency, OAuth, the reference app -----------------------------------------------------


async def test_idempotency_503_and_409_carry_the_signals() -> None:
    with dead_port() as port:
        app = IdempotencyMiddleware(
            chat_app(Counter()),
            store=f"redis://127.0.0.1:{port}/0?timeout=0.3",
            anonymous="shared",
            on_store_error="closed",
        )
        unavailable = await call(app)
    assert unavailable.status == 503
    assert assert_agree(unavailable.headers, should_retry=True) == 1000

    counter = Counter()
    app = IdempotencyMiddleware(chat_app(counter, delay=0.3), store="memory://", anonymous="shared")
    results = await asyncio.gather(call(app), call(app))
    conflict = next(r for r in results if r.status == 409)
    assert assert_agree(conflict.headers, should_retry=True) == 1000


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with serving(Issuer()) as running:
        yield running


async def test_oauth_503_when_the_keys_cannot_be_fetched(issuer: Issuer) -> None:
    issuer.reset()
    issuer.jwks_down = True
    async with client_for(middleware(issuer)) as client:
        response = await client.post(
            "/v1/chat/completions", json={}, headers=bearer(issuer.mint(scope="chat"))
        )
    issuer.reset()
    assert response.status_code == 503
    assert assert_agree(response.headers, should_retry=True) == 5000


def test_the_reference_apps_own_503s() -> None:
    for error in (model_loading(), overloaded(QueueFull("3 requests are already waiting"))):
        assert error.info.retry_after == 1
        assert error.info.should_retry is True
    assert retry_signals(1) == {
        "retry-after": "1",
        "retry-after-ms": "1000",
        "x-should-retry": "true",
    }


# -- the real SDK over a real socket ---------------------------------------------------------


class Arrivals:
    """Records, server side, when each request arrived and the retry-after-ms it was told."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.times: list[float] = []
        self.statuses: list[int] = []
        self.waits_ms: list[int | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.times.append(time.monotonic())

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", ()))
                self.statuses.append(message["status"])
                wait = headers.get(b"retry-after-ms")
                self.waits_ms.append(int(wait) if wait is not None else None)
            await send(message)

        await self.app(scope, receive, recording)


@pytest.mark.e2e
def test_the_openai_sdk_retries_a_429_after_the_advertised_delay() -> None:
    # one request per 2 s: a short window keeps the test quick; the SDK's own backoff (0.5 s
    # and up, with jitter) is not what it waits when the server names the delay
    arrivals = Arrivals(limited(requests="1 per 2 seconds", tokens="100 per minute"))
    with ThreadedServer(arrivals) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=2)
        with client:
            client.chat.completions.create(**chat())
            answer = client.chat.completions.create(**chat())
            assert answer.choices[0].message.content == "hi"
            assert arrivals.statuses == [200, 429, 200]  # refused once, retried once
            advertised = arrivals.waits_ms[1]
            assert advertised is not None
            assert advertised > 0
            # honoured: the retry arrived no sooner than retry-after-ms after the refusal
            assert arrivals.times[2] - arrivals.times[1] >= advertised / 1000

            # larger than the whole token quota: x-should-retry: false, so one attempt only
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(**chat(max_tokens=500))
            assert refused.value.response.headers["x-should-retry"] == "false"
            assert arrivals.statuses[3:] == [429]


@pytest.mark.e2e
def test_the_openai_sdk_does_not_retry_an_exhausted_spend_budget() -> None:
    # 1,000 a million tokens: each answer (7 tokens) costs 0.007, each admission reserves its
    # estimated prompt and max_tokens; a budget of 0.05 a day admits a few, then refuses
    prices = PriceTable({"m": Price(input=1000, output=1000)})
    app = RateLimitMiddleware(
        chat_completion_app(),
        tiers=[Tier("t", budgets=[Budget("0.05", "day")])],
        default_tier="t",
        prices=prices,
    )
    arrivals = Arrivals(app)
    with ThreadedServer(arrivals) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=2)
        with client, pytest.raises(openai.RateLimitError) as refused:  # noqa: PT012
            for _ in range(10):
                client.chat.completions.create(**chat())
    admitted = arrivals.statuses.index(429)
    assert admitted >= 1
    # the SDK made one attempt at the refused request: waiting cannot renew a budget
    assert arrivals.statuses == [200] * admitted + [429]
    assert refused.value.code == "insufficient_quota"
    assert refused.value.type == "insufficient_quota"
    headers = refused.value.response.headers
    assert headers["x-budget-limit-day"] == "0.05"
    ms = assert_agree(headers, should_retry=False)
    # Retry-After names the next UTC midnight
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    assert abs(ms / 1000 - (midnight - now).total_seconds()) < 60


@pytest.mark.e2e
def test_the_openai_sdk_waits_out_a_running_stream_and_gets_its_replay() -> None:
    # A stream of 80 chunks, 50 ms apart: about 3 s still to run when the SDK first asks. Told
    # a fixed second, its two retries would end at 2 s and it would give up; told the time the
    # stream still needs, it waits it out and gets the replay.
    counter = Counter()
    arrivals = Arrivals(
        IdempotencyMiddleware(
            chat_app(counter, chunks=80, chunk_delay=0.05), store="memory://", anonymous="shared"
        )
    )
    key = {"Idempotency-Key": "agent-step-7"}
    ask: dict[str, Any] = {**chat(max_tokens=80), "stream": True}
    running = threading.Event()
    first: list[bytes] = []

    def first_attempt(url: str) -> None:
        with (
            httpx.Client(timeout=30) as http,
            http.stream("POST", f"{url}/v1/chat/completions", json=ask, headers=key) as response,
        ):
            for chunk in response.iter_raw():
                first.append(chunk)
                if len(first) == 20:  # a second into the stream
                    running.set()

    with ThreadedServer(arrivals) as server:
        thread = threading.Thread(target=first_attempt, args=(server.url,))
        thread.start()
        try:
            assert running.wait(30)
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=2)
            with client:
                raw = client.chat.completions.with_raw_response.create(**ask, extra_headers=key)
                text = "".join(c.choices[0].delta.content or "" for c in raw.parse())
        finally:
            thread.join(30)

    assert raw.headers["idempotent-replayed"] == "true"
    assert text == "".join(f"tok{i}" for i in range(80))
    assert counter.runs == 1
    assert arrivals.statuses[0] == 200
    assert arrivals.statuses[-1] == 200
    refusals = [i for i, status in enumerate(arrivals.statuses) if status == 409]
    assert 1 <= len(refusals) <= 2  # within the SDK's two retries
    advertised = arrivals.waits_ms[refusals[0]]
    assert advertised is not None
    assert advertised > 1000  # the stream's remaining time, not the fixed second
    for i in refusals:
        wait = arrivals.waits_ms[i]
        assert wait is not None
        # obeyed: each retry arrived no sooner than the wait its 409 named
        assert arrivals.times[i + 1] - arrivals.times[i] >= wait / 1000
