from __future__ import annotations

import json
from typing import Any

import pytest

from aimiddleware._openai import (
    LLMResponse,
    is_usage_only_chunk,
    llm_operation,
    parse_llm_request,
    shared_llm_request,
)


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/v1/chat/completions", "chat"),
        ("/openai/v1/completions", "text_completion"),
        ("/v1/embeddings", "embeddings"),
        ("/v1/models", None),
    ],
)
def test_operation_from_path(path: str, operation: str | None) -> None:
    assert llm_operation(path) == operation


def test_chat_request_fields() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "user", "content": [{"text": "abc"}]},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 32,
        "max_tokens": 8,
        "temperature": 0.5,
        "top_p": 1,
    }
    request = parse_llm_request("/v1/chat/completions", body)
    assert request is not None
    assert (request.model, request.stream, request.include_usage) == ("m", True, True)
    assert request.max_tokens == 32  # max_completion_tokens wins
    assert (request.temperature, request.top_p) == (0.5, 1.0)
    assert request.prompt_chars == 8


def test_tool_schemas_and_calls_count_as_prompt() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c", "content": "ok"},
    ]
    plain = parse_llm_request("/v1/chat/completions", {"messages": messages[:1]})
    request = parse_llm_request("/v1/chat/completions", {"messages": messages, "tools": tools})
    assert plain is not None
    assert request is not None
    schemas = len(json.dumps(tools, separators=(",", ":")))
    earlier = len(json.dumps(calls, separators=(",", ":")))
    assert request.prompt_chars == 2 + 2 + schemas + earlier
    assert plain.prompt_chars == 2


@pytest.mark.parametrize(
    ("n", "choices"), [(3, 3), (1, 1), (0, 1), (True, 1), ("2", 1), (10**9, 128)]
)
def test_n_is_the_number_of_choices(n: Any, choices: int) -> None:
    request = parse_llm_request("/v1/chat/completions", {"messages": [], "n": n})
    assert request is not None
    assert request.choices == choices


def test_garbage_fields_are_ignored() -> None:
    body = {"model": 5, "stream": "yes", "max_tokens": True, "temperature": "hot", "messages": 3}
    request = parse_llm_request("/v1/chat/completions", body)
    assert request is not None
    assert (request.model, request.stream, request.max_tokens, request.temperature) == (
        None,
        False,
        None,
        None,
    )
    assert parse_llm_request("/v1/chat/completions", [1, 2]) is None


def test_stream_response_accumulates() -> None:
    response = LLMResponse()
    chunks = [
        {
            "id": "c1",
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
        },
        {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {
            "id": "c1",
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2},
        },
    ]
    parsed = [response.observe_event_data(json.dumps(c)) for c in chunks]
    response.observe_event_data("[DONE]")
    assert (response.id, response.model, response.finish_reasons) == ("c1", "m", ["stop"])
    assert (response.input_tokens, response.output_tokens, response.chunks) == (9, 2, 2)
    assert response.done
    assert [is_usage_only_chunk(p) for p in parsed] == [False, False, True]


def test_json_body_and_error() -> None:
    response = LLMResponse()
    response.observe_body(b'{"error": {"message": "x"}}')
    assert response.error
    response.observe_body(b"\xff not json")


def test_the_shared_request_is_parsed_once_per_scope() -> None:
    scope: dict[str, object] = {}
    first = shared_llm_request(scope, "/v1/chat/completions", {"model": "m", "stream": True})
    # a later reader gets the same object, whatever body it passes: the request has one body
    again = shared_llm_request(scope, "/v1/chat/completions", {"model": "other"})
    assert first is again
    assert first is not None
    assert first.model == "m"
    assert first.stream
    assert shared_llm_request({}, "/v1/models", {"model": "m"}) is None
    not_llm: dict[str, object] = {}
    assert shared_llm_request(not_llm, "/v1/chat/completions", ["not", "a", "dict"]) is None
    assert shared_llm_request(not_llm, "/v1/chat/completions", {"model": "m"}) is None
