"""Tools, n, logprobs and logit_bias of the reference app's chat completions, with the real
model and the openai SDK over a socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from reference_app.engine import bundled_model_path

from ..servers import ThreadedServer
from .conftest import MODEL

pytestmark = [pytest.mark.model, pytest.mark.e2e]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


_VOCABULARY: list[Any] = []


@pytest.fixture(scope="module", autouse=True)
def vocabulary() -> Iterator[None]:
    """The model's tokenizer, for token ids (closed before the interpreter exits)."""
    import llama_cpp

    llm = llama_cpp.Llama(str(bundled_model_path()), vocab_only=True, verbose=False)
    _VOCABULARY.append(llm)
    yield
    _VOCABULARY.clear()
    llm.close()


def token_ids(text: str) -> list[int]:
    return list(_VOCABULARY[0].tokenize(text.encode(), add_bos=False, special=False))


def assert_weather_call(call: Any) -> None:
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city"}
    assert isinstance(arguments["city"], str)


def raw_chunks(server: ThreadedServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, timeout=60
    ) as response:
        assert response.status_code == 200
        text = response.read().decode()
    assert text.endswith("data: [DONE]\n\n")
    return [json.loads(e[6:]) for e in text.split("\n\n")[:-2]]


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_a_forced_call_is_a_valid_call(client: openai.OpenAI, choice: Any) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice=choice, max_tokens=60
    )
    (answer,) = reply.choices
    assert answer.finish_reason == "tool_calls"
    assert answer.message.content is None
    assert answer.message.tool_calls
    for call in answer.message.tool_calls:
        assert_weather_call(call)


@pytest.mark.parametrize("stream", [False, True])
def test_a_named_function_is_the_one_called(client: openai.OpenAI, stream: bool) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": ASK,
        "tools": [WEATHER, TIME],
        "tool_choice": named,
        "max_tokens": 60,
    }
    if stream:
        with client.chat.completions.stream(**request) as events:
            reply = events.get_final_completion()
    else:
        reply = client.chat.completions.create(**request)
    assert reply.choices[0].finish_reason == "tool_calls"
    calls = reply.choices[0].message.tool_calls or []
    assert calls
    assert {c.function.name for c in calls} == {"get_time"}
    assert all(json.loads(c.function.arguments)["zone"] in ("UTC", "CET") for c in calls)


def test_no_parallel_calls_means_one_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER, TIME],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=60,
    )
    assert len(reply.choices[0].message.tool_calls or []) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_none_answers_in_text(client: openai.OpenAI, stream: bool) -> None:
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": ASK,
        "tools": [WEATHER],
        "tool_choice": "none",
        "max_tokens": 12,
    }
    if stream:
        # (the SDK's stream helper refuses to parse an answer cut at max_tokens)
        text, finish = [], None
        for chunk in client.chat.completions.create(**request, stream=True):
            delta = chunk.choices[0].delta
            assert delta.tool_calls is None
            text.append(delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        assert finish in ("stop", "length")
        assert "".join(text)
        return
    answer = client.chat.completions.create(**request).choices[0]
    assert answer.finish_reason in ("stop", "length")
    assert answer.message.tool_calls is None
    assert answer.message.content


@pytest.mark.parametrize("stream", [False, True])
def test_auto_admits_a_call_and_a_plain_answer(client: openai.OpenAI, stream: bool) -> None:
    # the opening "[" of a call, pushed up or banned: the grammar allows both answers
    opening = {str(token_ids("[")[0]): 100}
    banned = {str(token_ids("[")[0]): -100}
    request: dict[str, Any] = {
        "model": MODEL,
        "messages": ASK,
        "tools": [WEATHER],
        "max_tokens": 60,
        "temperature": 0,
    }
    if stream:
        # the SDK's stream accumulator (its helper refuses an answer cut at max_tokens)
        def accumulated(bias: dict[str, int]) -> Any:
            state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
            for chunk in client.chat.completions.create(**request, logit_bias=bias, stream=True):
                state.handle_chunk(chunk)
            return state.current_completion_snapshot.choices[0]

        called, answered = accumulated(opening), accumulated(banned)
    else:
        called = client.chat.completions.create(**request, logit_bias=opening).choices[0]
        answered = client.chat.completions.create(**request, logit_bias=banned).choices[0]
    assert called.finish_reason == "tool_calls"
    assert called.message.tool_calls
    for call in called.message.tool_calls:
        assert_weather_call(call)
    assert answered.finish_reason in ("stop", "length")
    assert answered.message.tool_calls in (None, [])
    assert answered.message.content
    assert not answered.message.content.startswith("[")


def test_a_streamed_call_in_the_deltas_the_sdk_assembles(
    client: openai.OpenAI, reference_server: ThreadedServer
) -> None:
    body = {
        "model": MODEL,
        "messages": ASK,
        "tools": [WEATHER],
        "tool_choice": "required",
        "max_tokens": 60,
        "stream": True,
    }
    chunks = raw_chunks(reference_server, body)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    opening = calls[0]
    assert set(opening) == {"index", "id", "type", "function"}
    assert opening["index"] == 0
    assert opening["type"] == "function"
    assert opening["function"] == {"name": "get_weather", "arguments": ""}
    assert all(set(c) == {"index", "function"} for c in calls[1:] if c["index"] == 0)
    arguments = "".join(c["function"]["arguments"] for c in calls if c["index"] == 0)
    assert set(json.loads(arguments)) == {"city"}
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert all("usage" not in c for c in chunks)

    # the SDK's helper assembles the same deltas into a call
    del body["stream"]
    with client.chat.completions.stream(**body) as events:
        kinds = {event.type for event in events}
        final = events.get_final_completion()
    assert "tool_calls.function.arguments.done" in kinds
    assert final.choices[0].finish_reason == "tool_calls"
    for call in final.choices[0].message.tool_calls or []:
        assert_weather_call(call)


def test_a_tool_result_in_a_second_turn(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=60
    )
    message = first.choices[0].message
    assert message.tool_calls
    call = message.tool_calls[0]
    history: list[Any] = [
        *ASK,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 degrees Celsius."},
    ]
    second = client.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER], tool_choice="none", max_tokens=16
    )
    assert second.choices[0].message.content
    assert second.choices[0].finish_reason in ("stop", "length")

    # the call and its result were written into the prompt
    def prompt_tokens(messages: list[Any]) -> int:
        reply = client.chat.completions.create(
            model=MODEL, messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=1
        )
        assert reply.usage is not None
        return reply.usage.prompt_tokens

    assert second.usage is not None
    with_call = prompt_tokens(history[:2])
    assert with_call > prompt_tokens(ASK) + len(token_ids(call.function.arguments))
    assert second.usage.prompt_tokens >= with_call + len(token_ids("Sunny, 24 degrees Celsius."))


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"messages": [*ASK, {"role": "tool", "content": "x"}]}, "messages.[1].tool_call_id"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [{"type": "retrieval"}]}, "tools"),
        ({"tools": None, "tool_choice": "required"}, "tool_choice"),
    ],
)
def test_bad_tool_fields_are_a_bad_request(
    reference_server: ThreadedServer, change: dict[str, Any], param: str
) -> None:
    body = {"model": MODEL, "messages": ASK, "tools": [WEATHER], "max_tokens": 4, **change}
    response = httpx.post(f"{reference_server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_n_choices(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK, n=2, max_tokens=8, temperature=1.0, seed=3
    )
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.message.content for c in reply.choices)
    one = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, seed=3)
    assert reply.usage is not None
    assert one.usage is not None
    assert reply.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt is read once
    assert reply.usage.completion_tokens > one.usage.completion_tokens - 8
    assert reply.usage.completion_tokens <= 16


def test_n_choices_streamed_with_their_index(reference_server: ThreadedServer) -> None:
    body = {
        "model": MODEL,
        "messages": ASK,
        "n": 2,
        "max_tokens": 8,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    *chunks, usage = raw_chunks(reference_server, body)
    produced = {0: 0, 1: 0}
    finished = set()
    for chunk in chunks:
        (choice,) = chunk["choices"]
        produced[choice["index"]] += 1 if choice["delta"].get("content") else 0
        if choice["finish_reason"]:
            finished.add(choice["index"])
    assert finished == {0, 1}
    assert all(count > 0 for count in produced.values())
    completion = usage["usage"]["completion_tokens"]
    assert sum(produced.values()) <= completion <= 16


def test_logprobs_by_default(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=6, logprobs=True, top_logprobs=3, temperature=0
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content
    assert "".join(e.token for e in logprobs.content) == reply.choices[0].message.content
    for entry in logprobs.content:
        assert entry.logprob <= 0
        assert 1 <= len(entry.top_logprobs) <= 3
        # greedy: the chosen token is the most likely one
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)

    streamed: list[Any] = []
    text = []
    for chunk in client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        max_tokens=6,
        logprobs=True,
        top_logprobs=3,
        temperature=0,
        stream=True,
    ):
        choice = chunk.choices[0]
        text.append(choice.delta.content or "")
        if choice.logprobs is not None:
            streamed += choice.logprobs.content or []
    assert "".join(text) == reply.choices[0].message.content
    assert [e.token for e in streamed] == [e.token for e in logprobs.content]


def test_logit_bias_bans_the_greedy_first_token(client: openai.OpenAI) -> None:
    request: dict[str, Any] = {"model": MODEL, "messages": ASK, "max_tokens": 4, "temperature": 0}
    greedy = client.chat.completions.create(**request).choices[0].message.content or ""
    first = token_ids(greedy)[0]
    banned = client.chat.completions.create(**request, logit_bias={str(first): -100})
    text = banned.choices[0].message.content or ""
    assert text != greedy
    assert token_ids(text)[0] != first


@pytest.mark.parametrize("bias", [{"99999999": 1}, {"12": 101}, {"x": 1}])
def test_a_bad_logit_bias_is_a_bad_request(
    reference_server: ThreadedServer, bias: dict[str, Any]
) -> None:
    body = {"model": MODEL, "messages": ASK, "max_tokens": 2, "logit_bias": bias}
    response = httpx.post(f"{reference_server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "logit_bias"


def test_chunks_carry_no_usage_unless_asked(reference_server: ThreadedServer) -> None:
    # the rate limiter in the stack asks the app for usage; the client must not see it
    body = {"model": MODEL, "messages": ASK, "max_tokens": 6, "stream": True}
    chunks = raw_chunks(reference_server, body)
    assert chunks
    assert all("usage" not in c for c in chunks)
    asked = raw_chunks(reference_server, {**body, "stream_options": {"include_usage": True}})
    assert all(c["usage"] is None for c in asked[:-1])
    assert asked[-1]["usage"]["completion_tokens"] > 0


def test_logit_bias_on_text_completions(client: openai.OpenAI) -> None:
    request: dict[str, Any] = {
        "model": MODEL,
        "prompt": "The capital of France is",
        "max_tokens": 3,
        "temperature": 0,
    }
    greedy = client.completions.create(**request).choices[0].text
    first = token_ids(greedy)[0]
    banned = client.completions.create(**request, logit_bias={str(first): -100}).choices[0].text
    assert banned != greedy
    assert token_ids(banned)[0] != first
