"""The rate limiter's prompt estimate against what the real model reads: through the reference
app, each short chat is reserved at least the prompt tokens SmolLM2 reports for it (its chat
template's tokens included), and not much more."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from ..live import wait_until
from ..servers import ThreadedServer
from .conftest import MODEL, serve_reference

pytestmark = [pytest.mark.model, pytest.mark.e2e]

MAX_TOKENS = 4

CHATS: dict[str, list[dict[str, str]]] = {
    "one short message": [{"role": "user", "content": "hi"}],
    "a question": [{"role": "user", "content": "What is the capital city of France?"}],
    "a system message": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ],
    "three turns": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello! How can I help you today?"},
        {"role": "user", "content": "Tell me a fact about cats."},
    ],
}

# the template's default system prompt, left out when a chat has a system message of its own,
# is the most the estimate reserves over what the model reads
MOST_OVER = 25


@pytest.fixture(scope="module")
def logged() -> Iterator[ThreadedServer]:
    # the default settings keep a token limit (never reached): each LLM call is reserved
    with serve_reference(access_log=True) as server:
        yield server


def access_record(caplog: pytest.LogCaptureFixture, request_id: str) -> dict[str, Any]:
    """The access log's record of the request ``request_id`` (written as its span ends)."""

    def records() -> list[dict[str, Any]]:
        found = [
            json.loads(r.getMessage()) for r in caplog.records if r.name == "aimiddleware.access"
        ]
        return [r for r in found if r["request_id"] == request_id]

    assert wait_until(lambda: len(records()) == 1)
    return records()[0]


def reserved_and_read(
    caplog: pytest.LogCaptureFixture, raw: Any, output_cap: int
) -> tuple[int, int]:
    """The prompt tokens the limiter reserved for an answer (its reservation less the output
    cap), and the prompt tokens the model reported."""
    record = access_record(caplog, raw.headers["x-request-id"])
    reserved = record["decisions"]["ratelimit.tokens_reserved"]
    return reserved - output_cap, record["input_tokens"]


@pytest.mark.parametrize("name", list(CHATS))
def test_a_short_chat_is_reserved_at_least_the_prompt_the_model_reads(
    logged: ThreadedServer, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    caplog.set_level(logging.INFO, "aimiddleware.access")
    with openai.OpenAI(base_url=f"{logged.url}/v1", api_key="none", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=CHATS[name], max_tokens=MAX_TOKENS, temperature=0
        )
    usage = raw.parse().usage
    assert usage is not None
    prompt_reserved, read = reserved_and_read(caplog, raw, MAX_TOKENS)
    assert read == usage.prompt_tokens  # the access log states the model's own figure
    assert read <= prompt_reserved <= read + MOST_OVER


@pytest.mark.parametrize(
    "fields",
    [{"input": "hi"}, {"input": "hi", "instructions": "Be brief."}],
    ids=["input", "input-and-instructions"],
)
def test_a_short_response_is_reserved_at_least_the_prompt_the_model_reads(
    logged: ThreadedServer, caplog: pytest.LogCaptureFixture, fields: dict[str, str]
) -> None:
    caplog.set_level(logging.INFO, "aimiddleware.access")
    with openai.OpenAI(base_url=f"{logged.url}/v1", api_key="none", max_retries=0) as client:
        raw = client.responses.with_raw_response.create(
            model=MODEL, max_output_tokens=16, temperature=0, **fields
        )
    usage = raw.parse().usage
    assert usage is not None
    prompt_reserved, read = reserved_and_read(caplog, raw, 16)
    assert read == usage.input_tokens
    assert read <= prompt_reserved <= read + MOST_OVER
