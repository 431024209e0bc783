"""What the middlewares read from Responses API traffic: the request's facts, and what a
response (streamed or not) states about itself."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aimiddleware._openai import LLMResponse, llm_operation, parse_llm_request
from aimiddleware._responses import SequenceTracker, error_event
from aimiddleware._sse import SSEParser
from aimiddleware.errors import ErrorInfo
from testkit.responses_app import event, response_events, response_object


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/v1/responses", "chat"),
        ("/openai/v1/responses", "chat"),
        ("/v1/responses/resp_1", None),
        ("/v1/responses/resp_1/input_items", None),
    ],
)
def test_creating_a_response_is_a_chat(path: str, operation: str | None) -> None:
    assert llm_operation(path) == operation


def test_request_fields() -> None:
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    body = {
        "model": "m",
        "instructions": "Be brief.",  # 9
        "input": [
            {"role": "user", "content": "hello"},  # 5
            {"role": "user", "content": [{"type": "input_text", "text": "abc"}]},  # 3
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},  # 2
            {"type": "function_call_output", "call_id": "c", "output": "ok"},  # 2
        ],
        "tools": tools,
        "stream": True,
        "max_output_tokens": 32,
        "max_tokens": 8,  # not a Responses API field: ignored
        "temperature": 0.5,
        "top_p": 1,
    }
    request = parse_llm_request("/v1/responses", body)
    assert request is not None
    assert (request.operation, request.model, request.stream) == ("chat", "m", True)
    assert request.max_tokens == 32
    assert (request.temperature, request.top_p) == (0.5, 1.0)
    tool_chars = len(json.dumps(tools, separators=(",", ":")))
    assert request.prompt_chars == 9 + 5 + 3 + 2 + 2 + tool_chars
    # the stream states its usage unasked: nothing to ask for
    assert request.include_usage is True


def test_a_string_input_and_no_cap() -> None:
    request = parse_llm_request("/v1/responses", {"model": "m", "input": "hello there"})
    assert request is not None
    assert (request.prompt_chars, request.max_tokens, request.stream) == (11, None, False)
    assert parse_llm_request("/v1/responses", ["not", "an", "object"]) is None


def stream_facts(frames: list[bytes]) -> LLMResponse:
    response = LLMResponse()
    for parsed in SSEParser().feed(b"".join(frames)):
        response.observe_event_data(parsed.data)
    return response


def test_a_completed_stream_states_its_usage_and_status() -> None:
    response = stream_facts(response_events(["a", "b", "c"], id="resp_9", usage=(11, 3)))
    assert (response.id, response.model) == ("resp_9", "test-model")
    assert (response.input_tokens, response.output_tokens, response.total_tokens) == (11, 3, 14)
    assert response.finish_reasons == ["completed"]
    assert response.chunks == 3  # one per output_text delta
    assert response.done
    assert not response.error


def test_an_incomplete_stream_states_why() -> None:
    frames = response_events(["a"], usage=(2, 1), incomplete="max_output_tokens")
    response = stream_facts(frames)
    assert response.finish_reasons == ["max_output_tokens"]
    assert (response.input_tokens, response.output_tokens) == (2, 1)


def test_a_failed_stream_is_an_error() -> None:
    failed = {**response_object("", status="failed", usage=None), "error": {"code": "x"}}
    response = stream_facts(
        [
            event("response.output_text.delta", 0, delta="a"),
            event("response.failed", 1, response=failed),
        ]
    )
    assert response.error
    assert response.finish_reasons == ["failed"]
    assert response.input_tokens is None
    errored = stream_facts([event("error", 0, code="server_error", message="m", param=None)])
    assert errored.error
    assert not errored.finish_reasons


def test_a_json_response_states_its_usage_and_status() -> None:
    response = LLMResponse()
    response.observe_body(json.dumps(response_object("hi", id="resp_2", usage=(7, 2))).encode())
    assert (response.id, response.input_tokens, response.output_tokens) == ("resp_2", 7, 2)
    assert response.finish_reasons == ["completed"]
    assert response.chunks == 0
    assert not response.error


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "https://errors.example.com/rate_limit_exceeded", "title": "Too Many Requests"},
        {"error": {"message": "boom", "type": "server_error"}},
    ],
    ids=["problem", "envelope"],
)
def test_error_bodies_are_read_as_before(payload: dict[str, Any]) -> None:
    response = LLMResponse()
    response.observe(payload)
    assert response.error is ("error" in payload)
    assert not response.finish_reasons


def test_sequence_numbers_are_followed_across_chunks() -> None:
    tracker = SequenceTracker()
    assert tracker.next == 0
    for frame in response_events(["a", "b"]):
        tracker.feed(frame)
    assert tracker.next == 10  # ten events: four opening, two deltas, three dones, completed
    tracker.feed(b'data: {"sequence_number": 10, "delta": "\\"sequence_number\\": 99"}\n\n')
    assert tracker.next == 11  # a delta's text is never read as a number
    tracker.feed(b": keep-alive\n\n")
    assert tracker.next == 11


def test_the_error_event_is_what_the_responses_api_sends() -> None:
    info = ErrorInfo(429, "Slow down.", code="rate_limit_exceeded", param="model")
    raw = error_event(info, 4, trace_id="0af7651916cd43dd8448eb211c80319c")
    (parsed,) = SSEParser().feed(raw)
    assert parsed.event == "error"
    assert parsed.data is not None
    assert json.loads(parsed.data) == {
        "type": "error",
        "code": "rate_limit_exceeded",
        "message": "Slow down.",
        "param": "model",
        "sequence_number": 4,
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
    }
