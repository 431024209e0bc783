"""The Responses API (``/v1/responses``) on the real model, driven by the real openai SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pydantic
import pytest

from ..servers import ThreadedServer
from .conftest import MODEL

pytestmark = [pytest.mark.model, pytest.mark.e2e]

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def sdk(server: ThreadedServer, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def test_create_plain(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL, input="Say hello.", instructions="Be brief.", max_output_tokens=24
    )
    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.model == MODEL
    assert response.status in ("completed", "incomplete")
    assert response.instructions == "Be brief."
    [message] = response.output
    assert message.type == "message"
    assert message.role == "assistant"
    assert response.output_text
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens > 0
    assert 0 < usage.output_tokens <= 24
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_message_items_as_input(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL,
        input=[
            {"role": "developer", "content": "Answer in one word."},
            {"role": "user", "content": [{"type": "input_text", "text": "Name a colour."}]},
            {"type": "message", "role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one."},
        ],
        max_output_tokens=8,
        temperature=0,
    )
    assert response.status in ("completed", "incomplete")
    assert response.output_text


def test_streamed_events_in_order(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model=MODEL, input="Name three colours.", max_output_tokens=32, stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    deltas = kinds[4 : kinds.index("response.output_text.done")]
    assert deltas
    assert set(deltas) == {"response.output_text.delta"}
    assert kinds[len(deltas) + 4 :] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        f"response.{events[-1].response.status}",  # type: ignore[union-attr]
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert final.status in ("completed", "incomplete")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.output_text == text
    assert final.usage is not None
    assert 0 < final.usage.output_tokens <= 32
    assert events[0].response.id == final.id  # type: ignore[union-attr]
    assert events[0].response.status == "in_progress"  # type: ignore[union-attr]


def test_stream_frames_name_their_event(reference_server: ThreadedServer) -> None:
    body = {"model": MODEL, "input": "Hi.", "max_output_tokens": 8, "stream": True}
    r = httpx.post(f"{reference_server.url}/v1/responses", json=body, timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = r.text.split("\n\n")
    assert frames.pop() == ""
    for frame in frames:
        event, data = frame.split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert event == f"event: {payload['type']}"
    assert "[DONE]" not in r.text


def test_a_minimal_response_keeps_the_answer_and_its_cost(
    reference_server: ThreadedServer,
) -> None:
    body = {"model": MODEL, "input": "Hi.", "max_output_tokens": 4}
    r = httpx.post(
        f"{reference_server.url}/v1/responses",
        json=body,
        headers={"Prefer": "return=minimal"},
        timeout=30,
    )
    assert r.status_code == 200
    minimal = r.json()
    assert set(minimal) == {"id", "model", "status", "incomplete_details", "output", "usage"}
    [item] = minimal["output"]
    assert item["type"] == "message"
    [part] = item["content"]
    assert set(part) == {"text"}
    assert part["text"]
    assert set(minimal["usage"]) >= {"input_tokens", "output_tokens", "total_tokens"}


def test_json_schema_answer_validates(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL,
        input="Invent a person. Answer in JSON.",
        text={"format": {"type": "json_schema", "name": "person", "schema": PERSON}},
        max_output_tokens=64,
        temperature=0.2,
    )
    person = json.loads(response.output_text)
    assert set(person) == {"name", "age"}
    assert isinstance(person["age"], int)
    assert response.text is not None
    assert response.text.format is not None
    assert response.text.format.type == "json_schema"


class Person(pydantic.BaseModel):
    name: str
    age: int


def test_the_sdk_parses_an_answer_into_its_model(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(
        model=MODEL,
        input="Invent a person.",
        text_format=Person,
        max_output_tokens=64,
        temperature=0.2,
    )
    assert isinstance(parsed.output_parsed, Person)


def test_stream_helper_collects_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=MODEL, input="Say something kind.", max_output_tokens=300, temperature=0
    ) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == text
    assert text


def test_continued_with_previous_response_id(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model=MODEL, input="My name is Ada.", max_output_tokens=16, temperature=0
    )
    second = client.responses.create(
        model=MODEL,
        input="What is my name?",
        previous_response_id=first.id,
        max_output_tokens=16,
        temperature=0,
    )
    assert second.previous_response_id == first.id
    alone = client.responses.create(
        model=MODEL, input="What is my name?", max_output_tokens=1, store=False
    )
    assert first.usage is not None
    assert second.usage is not None
    assert alone.usage is not None
    # the second prompt holds the first turn: its question ("My name is Ada.", 5 tokens or
    # more with its role's markup) and its answer
    earlier = first.usage.output_tokens + 5
    assert second.usage.input_tokens >= alone.usage.input_tokens + earlier


def test_retrieve_and_delete(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="Hi.", max_output_tokens=8)
    retrieved = client.responses.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    assert client.responses.delete(created.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_a_stored_response_is_not_streamed_again(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="Hi.", max_output_tokens=4)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.retrieve(created.id, stream=True)
    assert refused.value.code == "unsupported_value"
    assert refused.value.param == "stream"


def test_a_response_not_stored_is_not_found(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="Hi.", max_output_tokens=4, store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_another_caller_cannot_reach_a_response(reference_server: ThreadedServer) -> None:
    with sdk(reference_server, "key-alice") as alice, sdk(reference_server, "key-bob") as bob:
        mine = alice.responses.create(model=MODEL, input="Hi.", max_output_tokens=4)
        with pytest.raises(openai.NotFoundError):
            bob.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            bob.responses.delete(mine.id)
        with pytest.raises(openai.NotFoundError) as refused:
            bob.responses.create(
                model=MODEL, input="Go on.", previous_response_id=mine.id, max_output_tokens=4
            )
        assert refused.value.code == "previous_response_not_found"
        assert alice.responses.retrieve(mine.id).id == mine.id


def test_max_output_tokens_makes_it_incomplete(client: openai.OpenAI) -> None:
    ask = "Write a long story about a lighthouse keeper."
    response = client.responses.create(model=MODEL, input=ask, max_output_tokens=4)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]
    assert response.usage is not None
    assert response.usage.output_tokens == 4
    events = list(client.responses.create(model=MODEL, input=ask, max_output_tokens=4, stream=True))
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.usage is not None
    assert last.response.usage.output_tokens == 4


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_call_and_its_output(client: openai.OpenAI, stream: bool) -> None:
    ask = {"model": MODEL, "tools": [WEATHER], "max_output_tokens": 64, "temperature": 0}
    if stream:
        with client.responses.stream(
            input="Weather in Paris?", tool_choice="required", **ask
        ) as events:
            kinds = [event.type for event in events]
            called = events.get_final_response()
        assert "response.function_call_arguments.delta" in kinds
        assert "response.function_call_arguments.done" in kinds
    else:
        called = client.responses.create(input="Weather in Paris?", tool_choice="required", **ask)
    call = called.output[0]
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert call.call_id.startswith("call_")
    assert set(json.loads(call.arguments)) == {"city"}
    answer = client.responses.create(
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"}],
        previous_response_id=called.id,
        tool_choice="none",
        **ask,
    )
    assert answer.output[0].type == "message"
    assert answer.output_text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"input": [{"type": "input_image", "image_url": "x"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_file"}]}]}, "input[0].content[0]"),
        ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        ({"input": []}, "input"),
        (
            {"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]},
            "input[0].call_id",
        ),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]}, "tool_choice"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format"),
        ({"truncation": "auto"}, "truncation"),
        ({"reasoning": {"effort": "low"}}, "reasoning"),
    ],
)
def test_a_bad_request_names_its_param(
    reference_server: ThreadedServer, extra: dict[str, Any], param: str
) -> None:
    body = {"model": MODEL, "input": "Hi.", "max_output_tokens": 4, **extra}
    r = httpx.post(f"{reference_server.url}/v1/responses", json=body, timeout=30)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"]


def test_an_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.responses.create(model="gpt-4o", input="Hi.")
    assert raised.value.code == "model_not_found"


def test_the_deadline_mid_stream_is_an_error_event_then_failed(reference_factory: Any) -> None:
    endless = {"type": "array", "minItems": 700, "items": {"type": "integer"}}
    body = {
        "model": MODEL,
        "input": "Count.",
        "stream": True,
        "text": {"format": {"type": "json_schema", "name": "numbers", "schema": endless}},
    }
    with reference_factory(generation_timeout=2) as server:
        r = httpx.post(f"{server.url}/v1/responses", json=body, timeout=30)
    assert r.status_code == 200
    events = [json.loads(f.split("\ndata: ")[1]) for f in r.text.split("\n\n")[:-1]]
    error, failed = events[-2:]
    assert error["type"] == "error"
    assert error["code"] == "generation_timeout"
    assert failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["message"] == error["message"]
    assert any(e["type"] == "response.output_text.delta" for e in events)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
