"""Idempotency against the reference app with the real model, driven by the openai SDK."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import openai
import pytest

from ..servers import RedisServer, ThreadedServer
from .conftest import MODEL, health

pytestmark = [pytest.mark.model, pytest.mark.e2e]

Factory = Callable[..., AbstractContextManager[ThreadedServer]]
MESSAGES = [{"role": "user", "content": "Name three colours."}]


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"e2e-{uuid.uuid4()}"}


def started(server: ThreadedServer) -> int:
    return int(health(server.url)["generations_started"])


def test_non_streamed_replay_is_equal(
    client: openai.OpenAI, reference_server: ThreadedServer
) -> None:
    headers = key()
    before = started(reference_server)
    first = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, max_tokens=12, extra_headers=headers
    )
    second = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, max_tokens=12, extra_headers=headers
    )
    assert started(reference_server) - before == 1
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.http_response.content == first.http_response.content
    assert second.parse().id == first.parse().id


def test_streamed_replay_yields_the_same_chunks(
    client: openai.OpenAI, reference_server: ThreadedServer
) -> None:
    headers = key()
    before = started(reference_server)

    def run() -> list[str]:
        for _ in range(100):
            try:
                stream = client.chat.completions.create(
                    model=MODEL,
                    messages=MESSAGES,
                    max_tokens=16,
                    stream=True,
                    extra_headers=headers,
                )
                return [chunk.model_dump_json() for chunk in stream]
            except openai.ConflictError:
                # the SDK stops at [DONE]; the record completes a moment later (Retry-After: 1)
                time.sleep(0.05)
        raise AssertionError("the first stream never completed")

    original, replay = run(), run()
    assert started(reference_server) - before == 1
    assert replay == original
    assert len(original) > 2


def test_streamed_tool_call_replay_is_byte_exact(reference_server: ThreadedServer) -> None:
    headers = {**key(), "Authorization": "Bearer tenant-a"}  # records are per credential
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 20}},
                "required": ["city"],
            },
        },
    }
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": [tool],
        "tool_choice": "required",
        "max_tokens": 60,
        "stream": True,
    }
    before = started(reference_server)

    def run() -> bytes:
        for _ in range(100):
            response = httpx.post(
                f"{reference_server.url}/v1/chat/completions",
                json=body,
                headers=headers,
                timeout=60,
            )
            if response.status_code != 409:  # the record completes a moment after [DONE]
                assert response.status_code == 200
                # a slow machine may add keep-alive comments to the live stream only
                return b"".join(
                    event + b"\n\n"
                    for event in response.content.split(b"\n\n")
                    if event and not event.startswith(b":")
                )
            time.sleep(0.05)
        raise AssertionError("the first stream never completed")

    original, replay = run(), run()
    assert started(reference_server) - before == 1
    assert replay == original
    assert b'"finish_reason":"tool_calls"' in original


@pytest.mark.anyio
async def test_fifty_concurrent_identical_requests_generate_once(
    reference_server: ThreadedServer,
) -> None:
    headers = key()
    before = started(reference_server)
    async with openai.AsyncOpenAI(
        base_url=f"{reference_server.url}/v1", api_key="none", max_retries=0
    ) as client:

        async def one() -> Any:
            try:
                return await client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, max_tokens=12, extra_headers=headers
                )
            except openai.ConflictError as exc:
                return exc

        results = await asyncio.gather(*(one() for _ in range(50)))
    assert started(reference_server) - before == 1
    replies = [r for r in results if not isinstance(r, openai.ConflictError)]
    conflicts = [r for r in results if isinstance(r, openai.ConflictError)]
    assert len(replies) + len(conflicts) == 50
    assert replies  # the first at least
    assert len({r.id for r in replies}) == 1
    assert all(c.response.headers["retry-after"] == "1" for c in conflicts)


def test_payload_mismatch_is_422(client: openai.OpenAI, reference_server: ThreadedServer) -> None:
    headers = key()
    client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=8, extra_headers=headers
    )
    before = started(reference_server)
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=9, extra_headers=headers
        )
    # through NormalizeMiddleware: the OpenAI envelope, the draft's problem type as its code
    assert caught.value.code == "idempotency-key-reused"
    problem_json = {**headers, "Accept": "application/problem+json"}
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=9, extra_headers=problem_json
        )
    assert caught.value.response.headers["content-type"] == "application/problem+json"
    assert caught.value.response.json()["type"].endswith("#idempotency-key-reused")
    assert started(reference_server) == before


def test_tenants_are_isolated(reference_server: ThreadedServer) -> None:
    headers = key()
    before = started(reference_server)
    ids = {}
    for tenant in ("sk-tenant-a", "sk-tenant-b", "sk-tenant-a"):
        with openai.OpenAI(
            base_url=f"{reference_server.url}/v1", api_key=tenant, max_retries=0
        ) as client:
            reply = client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=8, extra_headers=headers
            )
        ids.setdefault(tenant, set()).add(reply.id)
    assert started(reference_server) - before == 2
    assert len(ids["sk-tenant-a"]) == 1
    assert ids["sk-tenant-a"] != ids["sk-tenant-b"]


def test_disconnect_mid_stream_then_retry_gets_the_complete_answer(
    client: openai.OpenAI, reference_server: ThreadedServer
) -> None:
    headers = key()
    before = started(reference_server)
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 48, "stream": True}
    url = f"{reference_server.url}/v1/chat/completions"
    # the same credential as the SDK's client: the same tenant
    same_tenant = {**headers, "Authorization": "Bearer none"}
    with httpx.stream("POST", url, json=body, headers=same_tenant, timeout=30) as response:
        assert response.status_code == 200
        for _ in response.iter_raw():
            break  # the client leaves after its first bytes
    deadline = time.monotonic() + 60
    while True:
        try:
            stream = client.chat.completions.with_raw_response.create(
                model=MODEL,
                messages=MESSAGES,
                max_tokens=48,
                stream=True,
                extra_headers=headers,
            )
            break
        except openai.ConflictError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert stream.headers["idempotent-replayed"] == "true"
    chunks = list(stream.parse())
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] in ("stop", "length")  # the complete answer, not the cut one
    assert started(reference_server) - before == 1


def test_app_error_releases_the_key(reference_factory: Factory) -> None:
    headers = {**key(), "Authorization": "Bearer none"}
    long_body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count to a thousand."}],
        "max_tokens": 400,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "numbers",
                "schema": {"type": "array", "minItems": 400, "items": {"type": "integer"}},
            },
        },
    }
    with reference_factory(generation_timeout=0.3) as server:
        url = f"{server.url}/v1/chat/completions"
        first = httpx.post(url, json=long_body, headers=headers, timeout=30)
        assert first.status_code == 504  # the generation missed its deadline: not stored
        second = httpx.post(url, json=long_body, headers=headers, timeout=30)
        assert second.status_code == 504
        assert "idempotent-replayed" not in second.headers
        assert started(server) == 2  # the retry ran again


@pytest.mark.redis
def test_redis_stopped_is_503_so_a_retried_key_never_runs_twice(
    reference_factory: Factory, own_redis: RedisServer
) -> None:
    with reference_factory(redis_url=own_redis.url) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
        headers = key()
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=8, extra_headers=headers
        )
        own_redis.stop()
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=8, extra_headers=headers
            )
        client.close()
    response = caught.value.response
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert set(response.json()["error"]) >= {"message", "type", "code"}


@pytest.mark.redis
def test_redis_stopped_fails_open_when_asked(
    reference_factory: Factory, own_redis: RedisServer
) -> None:
    with reference_factory(redis_url=own_redis.url, idempotency_on_store_error="open") as server:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0) as client:
            headers = key()
            first = client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=8, extra_headers=headers
            )
            replay = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=MESSAGES, max_tokens=8, extra_headers=headers
            )
            assert replay.headers["idempotent-replayed"] == "true"
            assert replay.parse().id == first.id
            own_redis.stop()
            down = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=MESSAGES, max_tokens=8, extra_headers=key()
            )
        assert down.status_code == 200
        assert down.headers["idempotency-applied"] == "false"
        assert json.loads(down.http_response.content)["choices"]
