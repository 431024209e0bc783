"""The reference app's OpenAI-compatible surface, driven by the real openai SDK over a socket."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import anyio
import httpx
import openai
import pytest

from ..servers import ThreadedServer
from .conftest import MODEL

pytestmark = [pytest.mark.model, pytest.mark.e2e, pytest.mark.anyio]


def test_models(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_chat_non_streamed(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=12
    )
    choice = reply.choices[0]
    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    assert 0 < reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_chat_streamed_with_the_sdk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    content, finish, usage = [], None, None
    for chunk in stream:
        if chunk.choices:
            content.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        else:
            usage = chunk.usage
    assert "".join(content)
    assert finish in ("stop", "length")
    assert usage is not None
    assert 0 < usage.completion_tokens <= 16


def test_stream_framing_done_and_usage_chunk(reference_server: ThreadedServer) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 8,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST", f"{reference_server.url}/v1/chat/completions", json=body, timeout=30
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    assert raw.endswith("data: [DONE]\n\n")
    events = raw.split("\n\n")[:-1]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    payloads = [json.loads(e[6:]) for e in events[:-1]]
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert len({p["id"] for p in payloads}) == 1
    *chunks, usage_chunk = payloads
    assert usage_chunk["choices"] == []
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(c["usage"] is None for c in chunks)
    produced = sum(1 for c in chunks if c["choices"][0]["delta"].get("content"))
    assert usage_chunk["usage"]["completion_tokens"] >= produced > 0


def test_streamed_and_non_streamed_agree_at_temperature_zero(client: openai.OpenAI) -> None:
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 20,
        "temperature": 0,
        "seed": 7,
    }
    whole = client.chat.completions.create(**request)
    parts, usage = [], None
    for chunk in client.chat.completions.create(
        **request, stream=True, stream_options={"include_usage": True}
    ):
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        else:
            usage = chunk.usage
    assert "".join(parts) == whole.choices[0].message.content
    assert usage is not None
    assert whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_json_schema_answer_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Invent a person. Answer in JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema},
        },
        max_tokens=64,
        temperature=0.2,
    )
    person = json.loads(reply.choices[0].message.content or "")
    assert set(person) == {"name", "age"}
    assert isinstance(person["name"], str)
    assert isinstance(person["age"], int)


def test_json_object_answer_parses(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give me a JSON object describing a cat."}],
        response_format={"type": "json_object"},
        max_tokens=64,
        temperature=0,
    )
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)
    else:  # cut by max_tokens: still a valid JSON prefix of an object
        assert (reply.choices[0].message.content or "").lstrip().startswith("{")


def test_logprobs_are_refused_when_turned_off(reference_factory: Any) -> None:
    with (
        reference_factory(logprobs=False) as server,
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0) as client,
        pytest.raises(openai.BadRequestError) as caught,
    ):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, logprobs=True
        )
    assert caught.value.code == "unsupported_parameter"


def test_completions(client: openai.OpenAI) -> None:
    reply = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=8)
    assert reply.object == "text_completion"
    assert reply.choices[0].text
    assert reply.usage is not None
    assert reply.usage.completion_tokens <= 8
    text = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=MODEL, prompt="One, two,", max_tokens=6, stream=True
        )
        if c.choices
    )
    assert text


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model=MODEL, input=["a red apple", "the stock market"])
    assert [d.index for d in result.data] == [0, 1]
    first, second = (d.embedding for d in result.data)
    assert len(first) == len(second) > 100
    for vector in (first, second):
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-4)
    assert first != second
    single = client.embeddings.create(model=MODEL, input="a red apple")
    assert single.data[0].embedding == pytest.approx(first, abs=1e-5)
    assert result.usage.prompt_tokens > 0
    b64 = client.embeddings.create(model=MODEL, input="a red apple", encoding_format="base64")
    packed = base64.b64decode(b64.data[0].embedding)  # type: ignore[arg-type]
    assert list(struct.unpack(f"<{len(first)}f", packed)) == pytest.approx(first, abs=1e-5)


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"
    assert caught.value.body["param"] == "model"  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"temperature": 5}, "temperature"), ({"n": 0}, "n"), ({"messages": []}, "messages")],
)
def test_malformed_body_is_a_bad_request(
    client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "x"}],
        **extra,
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**request)
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"prompt": [-1], "max_tokens": 1}, "prompt"),
        ("/v1/completions", {"prompt": [1, 10**9], "max_tokens": 1}, "prompt"),
        ("/v1/embeddings", {"input": [-1]}, "input"),
        ("/v1/embeddings", {"input": [[5], [5, 2**31]]}, "input"),
    ],
)
def test_token_ids_outside_the_vocabulary_are_a_bad_request(
    reference_server: ThreadedServer, path: str, body: dict[str, Any], param: str
) -> None:
    # found by schemathesis: llama.cpp failed on them inside a worker thread (a 500)
    r = httpx.post(f"{reference_server.url}{path}", json={"model": MODEL, **body})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert "between 0 and " in error["message"]
    assert httpx.get(f"{reference_server.url}/health").json()["status"] == "ok"


@pytest.mark.parametrize("value", [[1] * 600, "hello " * 600, ["hi", "hello " * 600]])
def test_an_embedding_input_longer_than_the_context_is_a_bad_request(
    reference_server: ThreadedServer, value: Any
) -> None:
    # found by schemathesis: llama.cpp refused it inside a worker thread (a 500)
    r = httpx.post(
        f"{reference_server.url}/v1/embeddings", json={"model": MODEL, "input": value}, timeout=60
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["param"], error["code"]) == ("input", "context_length_exceeded")
    assert httpx.get(f"{reference_server.url}/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", '"messages":[{"role":"user","content":"a\\ud800b"}]'),
        ("/v1/completions", '"prompt":"a\\ud800b"'),
        ("/v1/embeddings", '"input":["ok","a\\udfffb"]'),
    ],
)
def test_an_unpaired_surrogate_is_a_bad_request(
    reference_server: ThreadedServer, path: str, body: str
) -> None:
    # found by schemathesis: valid JSON, but the text has no UTF-8 form (a 500 in the tokenizer)
    r = httpx.post(
        f"{reference_server.url}{path}",
        content=f'{{"model":"{MODEL}","max_tokens":1,{body}}}'.encode(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "unpaired surrogate" in error["message"]


@pytest.mark.parametrize("value", [[0], [9906, 1079], [[9906], [1079, 314]]])
def test_token_id_inputs_are_embedded(reference_server: ThreadedServer, value: Any) -> None:
    # found by schemathesis: llama-cpp-python's embed takes a list as texts, not token ids
    r = httpx.post(
        f"{reference_server.url}/v1/embeddings", json={"model": MODEL, "input": value}, timeout=60
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == (len(value) if isinstance(value[0], list) else 1)
    assert all(math.isclose(math.hypot(*d["embedding"]), 1.0, rel_tol=1e-3) for d in data)


def test_invalid_json_is_a_bad_request(reference_server: ThreadedServer) -> None:
    r = httpx.post(
        f"{reference_server.url}/v1/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_unknown_route_in_the_envelope(reference_server: ThreadedServer) -> None:
    r = httpx.get(f"{reference_server.url}/v1/nothing")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "unknown_url"


async def test_four_concurrent_streams_complete_with_their_usage(
    async_client: openai.AsyncOpenAI,
) -> None:
    results: dict[int, tuple[int, Any]] = {}

    async def one(i: int) -> None:
        stream = await async_client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Tell me fact number {i} about bees."}],
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
        produced, usage = 0, None
        async for chunk in stream:
            if chunk.choices:
                produced += bool(chunk.choices[0].delta.content)
            else:
                usage = chunk.usage
        results[i] = (produced, usage)

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(one, i)
    assert sorted(results) == [0, 1, 2, 3]
    for produced, usage in results.values():
        assert usage is not None
        assert 0 < produced <= usage.completion_tokens <= 16
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
