"""The Responses API through the whole stack: idempotent replays, token limits and spans, with
the real model and the real openai SDK."""

from __future__ import annotations

import time
import uuid

import openai
import pytest

from ..live import wait_for
from ..servers import ThreadedServer
from .conftest import MODEL, Traced, health, serve_reference

pytestmark = [pytest.mark.model, pytest.mark.e2e]

PROMPT = "Name three colours."
# the limiter's estimate of PROMPT as a Responses input: 19 characters / 4, 6 for its message and
# 25 for the request (the chat template's, by default)
PROMPT_ESTIMATE = 5 + 6 + 25


def sdk(server: ThreadedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


def test_an_idempotent_retry_of_a_stream_replays_its_events(
    client: openai.OpenAI, reference_server: ThreadedServer
) -> None:
    headers = {"Idempotency-Key": f"e2e-{uuid.uuid4()}"}
    before = int(health(reference_server.url)["generations_started"])

    def run() -> list[tuple[str, str]]:
        for _ in range(100):
            try:
                stream = client.responses.create(
                    model=MODEL,
                    input=PROMPT,
                    max_output_tokens=16,
                    stream=True,
                    extra_headers=headers,
                )
                return [(event.type, event.model_dump_json()) for event in stream]
            except openai.ConflictError:
                time.sleep(0.05)  # the record completes a moment after the last event
        raise AssertionError("the first stream never completed")

    original, replay = run(), run()
    assert int(health(reference_server.url)["generations_started"]) - before == 1
    assert replay == original  # the same typed events, data and order
    types = [kind for kind, _ in original]
    assert types[0] == "response.created"
    assert types[-1] in ("response.completed", "response.incomplete")
    assert "response.output_text.delta" in types


def test_max_output_tokens_is_reserved_and_a_larger_request_gets_a_429() -> None:
    # the reservation is the prompt estimate plus max_output_tokens: 36 + 8, then each answer
    # is settled to the usage its response.completed states (SmolLM2 reads ~34 prompt tokens)
    budget = 100
    with serve_reference(human_tokens=f"{budget}/minute") as server, sdk(server) as client:
        first = client.responses.with_raw_response.create(
            model=MODEL, input=PROMPT, max_output_tokens=8
        )
        second = client.responses.with_raw_response.create(
            model=MODEL, input=PROMPT, max_output_tokens=8, stream=True
        )
        events = list(second.parse())
        with pytest.raises(openai.RateLimitError) as caught:  # 36 + 80 is over the whole quota
            client.responses.create(model=MODEL, input=PROMPT, max_output_tokens=80)
    used = first.parse().usage
    assert used is not None
    reserved = PROMPT_ESTIMATE + 8
    assert first.headers["x-ratelimit-remaining-tokens"] == str(budget - reserved)
    assert second.headers["x-ratelimit-remaining-tokens"] == str(
        budget - used.total_tokens - reserved
    )
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert caught.value.status_code == 429
    assert caught.value.type == "tokens"
    assert caught.value.response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
def test_a_response_is_one_span_with_its_usage(
    traced: tuple[Traced, ThreadedServer], stream: bool
) -> None:
    spans, server = traced
    with sdk(server) as client:
        if stream:  # the last event carries the response, completed or cut at 16 tokens
            events = list(
                client.responses.create(
                    model=MODEL, input=PROMPT, max_output_tokens=16, stream=True
                )
            )
            last = events[-1]
            assert last.type in ("response.completed", "response.incomplete")
            response = last.response  # type: ignore[union-attr]
        else:
            response = client.responses.create(model=MODEL, input=PROMPT, max_output_tokens=16)
    assert response.usage is not None
    wait_for(lambda: len(spans.server_spans()) == 1)

    (span,) = spans.server_spans()
    attributes = dict(span.attributes or {})
    assert span.name == "POST /v1/responses"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["openai.api.type"] == "responses"
    assert attributes["gen_ai.request.max_tokens"] == 16
    assert attributes["gen_ai.response.id"] == response.id
    assert attributes["gen_ai.usage.input_tokens"] == response.usage.input_tokens
    assert attributes["gen_ai.usage.output_tokens"] == response.usage.output_tokens
    assert attributes["gen_ai.response.finish_reasons"] == (
        (response.incomplete_details.reason,) if response.incomplete_details else ("completed",)
    )
