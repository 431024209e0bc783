"""Streams: usage read from the last chunk, the extra usage chunk removed, slots held to the end."""

from __future__ import annotations

import asyncio
import json

import pytest

from aimiddleware._sse import SSEParser
from aimiddleware.ratelimit import RateLimitMiddleware, Tier

from .apps import CHAT_PROMPT, Upstream, body_of, call_raw, chat_body, headers_of, status_of
from .conftest import Keep

pytestmark = pytest.mark.anyio


def events(raw: bytes) -> list[str | None]:
    return [e.data for e in SSEParser().feed(raw)]


async def test_usage_chunk_added_then_removed(store: str, prefix: str, closing: Keep) -> None:
    upstream = Upstream()
    limited = closing(
        RateLimitMiddleware(
            upstream.app(),
            tiers=[Tier("t", tokens="1000/minute")],
            store=store,
            key_prefix=prefix,
        )
    )
    sent = await call_raw(limited, chat_body(stream=True, max_tokens=90))
    # the app was asked for usage ...
    assert upstream.bodies[0]["stream_options"] == {"include_usage": True}
    # ... and the client gets exactly the stream it asked for: no usage-only event
    data = events(body_of(sent))
    assert data[-1] == "[DONE]"
    assert all("usage" not in json.loads(d) for d in data[:-1] if d)
    assert len(data) == upstream.tokens + 2
    assert "content-length" not in headers_of(sent)
    # every other event went out byte for byte, one body message per event, none held back
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body" and m["body"]]
    assert bodies[0] == b'data: {"id": "chatcmpl-1", "object": "chat.completion.chunk", ' + (
        b'"model": "m", "choices": [{"index": 0, "delta": {"content": "t0"}, '
        b'"finish_reason": null}]}\n\n'
    )
    # the stream was charged its real usage (19), not the reservation (131)
    after = await call_raw(limited, chat_body(max_tokens=90))
    assert headers_of(after)["x-ratelimit-remaining-tokens"] == str(1000 - 19 - (CHAT_PROMPT + 90))


async def test_usage_null_the_middleware_caused_is_removed_byte_exact(
    prefix: str, closing: Keep
) -> None:
    # an app like OpenAI writes "usage": null on every chunk once asked for usage
    upstream = Upstream(null_usage=True)
    limited = closing(
        RateLimitMiddleware(
            upstream.app(), tiers=[Tier("t", tokens="1000/minute")], key_prefix=prefix
        )
    )
    sent = await call_raw(limited, chat_body(stream=True, max_tokens=90))
    assert upstream.bodies[0]["stream_options"] == {"include_usage": True}
    # the client sees the stream the app writes when nobody asks for usage, byte for byte
    unasked = await call_raw(upstream.app(), chat_body(stream=True, max_tokens=90))
    assert body_of(sent) == body_of(unasked)
    assert b"usage" not in body_of(sent)
    asked = chat_body(stream=True, max_tokens=90, stream_options={"include_usage": True})
    kept = await call_raw(limited, asked)
    # a client that asked gets the null usage fields and the usage chunk untouched
    assert body_of(kept).count(b'"usage": null') == upstream.tokens + 1


async def test_client_asked_for_usage_keeps_it(prefix: str, closing: Keep) -> None:
    upstream = Upstream()
    limited = closing(
        RateLimitMiddleware(
            upstream.app(), tiers=[Tier("t", tokens="1000/minute")], key_prefix=prefix
        )
    )
    body = chat_body(stream=True, max_tokens=90, stream_options={"include_usage": True})
    sent = await call_raw(limited, body)
    data = [json.loads(d) for d in events(body_of(sent)) if d and d != "[DONE]"]
    assert data[-1]["usage"] == upstream.usage
    after = await call_raw(limited, chat_body(max_tokens=90))
    assert headers_of(after)["x-ratelimit-remaining-tokens"] == str(1000 - 19 - (CHAT_PROMPT + 90))


async def test_disconnected_stream_releases_its_slot_and_pays_what_was_produced(
    store: str, prefix: str, closing: Keep
) -> None:
    upstream = Upstream(tokens=5)
    upstream.gate = asyncio.Event()  # the stream stalls after its first token
    limited = closing(
        RateLimitMiddleware(
            upstream.app(),
            tiers=[Tier("t", tokens="1000/minute", concurrency=1)],
            store=store,
            key_prefix=prefix,
        )
    )
    gone = asyncio.Event()
    sent: list[dict[str, object]] = []
    first = asyncio.create_task(
        call_raw(limited, chat_body(stream=True, max_tokens=90), disconnect_after=gone, sent=sent)
    )
    for _ in range(200):
        if any(m.get("body") for m in sent):
            break
        await asyncio.sleep(0.01)
    # while the stream runs, its slot is taken
    busy = await call_raw(limited, chat_body(max_tokens=10))
    assert status_of(busy) == 429
    assert json.loads(body_of(busy))["error"]["type"] == "concurrency"
    assert headers_of(busy)["retry-after"] == "1"
    gone.set()  # the client goes away mid-stream
    await asyncio.wait_for(first, 5)
    upstream.gate.set()  # later answers do not stall
    # the slot is back at once, and the broken stream paid its prompt and the one chunk sent
    after = await call_raw(limited, chat_body(max_tokens=90))
    assert status_of(after) == 200
    charged = CHAT_PROMPT + 1
    assert headers_of(after)["x-ratelimit-remaining-tokens"] == str(
        1000 - charged - (CHAT_PROMPT + 90)
    )


async def test_concurrency_slots_come_back_after_completion(
    store: str, prefix: str, closing: Keep
) -> None:
    upstream = Upstream()
    limited = closing(
        RateLimitMiddleware(
            upstream.app(),
            tiers=[Tier("t", concurrency=2)],
            store=store,
            key_prefix=prefix,
        )
    )
    upstream.gate = asyncio.Event()
    held = [asyncio.create_task(call_raw(limited, chat_body())) for _ in range(2)]
    for _ in range(200):
        if len(upstream.bodies) == 2:
            break
        await asyncio.sleep(0.01)
    third = await call_raw(limited, chat_body())
    assert status_of(third) == 429
    assert '"concurrency";q=2;qu="concurrent-requests"' in headers_of(third)["ratelimit-policy"]
    upstream.gate.set()
    done = await asyncio.gather(*held)
    assert [status_of(m) for m in done] == [200, 200]
    fourth = await call_raw(limited, chat_body())
    assert status_of(fourth) == 200
    assert '"concurrency";r=1' in headers_of(fourth)["ratelimit"]


@pytest.mark.redis
async def test_crashed_workers_slot_expires_by_lease(redis_url: str, prefix: str) -> None:
    from aimiddleware.ratelimit._engine import Slot
    from aimiddleware.ratelimit._storage import engine_from_url

    engine = engine_from_url(redis_url, strategy="sliding-window", timeout=1.0)
    try:
        slot = Slot(f"{prefix}{{who}}:slots", 1, 0.3)
        # a worker takes the slot and dies without settling
        assert (await engine.acquire([], slot, "dead-worker")).allowed
        assert not (await engine.acquire([], slot, "other")).allowed
        await asyncio.sleep(0.4)
        assert (await engine.acquire([], slot, "other")).allowed
    finally:
        await engine.aclose()


async def test_headers_are_added_without_touching_the_apps_own_list(prefix: str) -> None:
    shared = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": shared})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]

    limited = RateLimitMiddleware(app, tiers=[Tier("t", requests="5/minute")], key_prefix=prefix)
    for _ in range(2):
        sent = await call_raw(limited, {}, path="/ping")
        assert headers_of(sent)["x-ratelimit-limit-requests"] == "5"
    assert shared == [(b"content-type", b"application/json")]


@pytest.mark.parametrize("stream", [False, True])
async def test_usage_is_settled_before_the_last_byte(
    store: str, prefix: str, closing: Keep, stream: bool
) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", tokens="1000/minute")],
            store=store,
            key_prefix=prefix,
        )
    )
    seen: list[str] = []
    raw = json.dumps(chat_body(stream=stream, max_tokens=90)).encode()

    delivered = asyncio.Event()

    async def receive() -> dict[str, object]:
        if delivered.is_set():
            await asyncio.Event().wait()  # the client stays until the response is done
        delivered.set()
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            # the moment the client could see the end: a next request finds the real usage
            nxt = await call_raw(limited, chat_body(max_tokens=90))
            seen.append(headers_of(nxt)["x-ratelimit-remaining-tokens"])

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "query_string": b"",
        "state": {},
    }
    await limited(scope, receive, send)  # type: ignore[arg-type]
    assert seen == [str(1000 - 19 - (CHAT_PROMPT + 90))]
