"""Every Chat Completions request field is honoured, ignored for a documented reason, or
refused: none is accepted and silently ignored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openai.types.chat.completion_create_params import CompletionCreateParamsBase

from reference_app.chat import IGNORED, REFUSED
from reference_app.schemas import ChatCompletionRequest

from ..servers import ThreadedServer
from .conftest import MODEL, documented_fields

# the SDK declares `stream` in the streaming and non-streaming variants of the base
OPENAI_FIELDS = (
    CompletionCreateParamsBase.__required_keys__
    | CompletionCreateParamsBase.__optional_keys__
    | {"stream"}
)
# refused for some values only: the others are what the server does anyway
REFUSED_VALUES = {"modalities": ["audio"], "store": True}
HONOURED = set(ChatCompletionRequest.model_fields) - IGNORED
ASK = [{"role": "user", "content": "Hi"}]
EXAMPLES: dict[str, Any] = {
    "audio": {"voice": "alloy", "format": "wav"},
    "functions": [{"name": "f", "parameters": {"type": "object"}}],
    "function_call": "auto",
    "moderation": {"model": "omni-moderation-latest"},
    "prediction": {"type": "content", "content": "Hello"},
    "reasoning_effort": "low",
    "verbosity": "low",
    "web_search_options": {},
}


def test_every_openai_field_has_a_decision() -> None:
    decided = HONOURED | IGNORED | set(REFUSED) | set(REFUSED_VALUES)
    assert OPENAI_FIELDS - decided == set()
    # and the request model declares no field OpenAI does not have
    assert set(ChatCompletionRequest.model_fields) <= OPENAI_FIELDS


def test_the_docs_table_lists_every_field() -> None:
    documented = documented_fields("Chat Completions request fields")
    assert set(documented) == OPENAI_FIELDS
    assert {f for f, d in documented.items() if d == "ignored"} == IGNORED
    assert {f for f, d in documented.items() if d == "refused"} == set(REFUSED)


@pytest.mark.model
@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(REFUSED) + sorted(REFUSED_VALUES))
def test_a_refused_field_is_refused(reference_server: ThreadedServer, name: str) -> None:
    value = EXAMPLES.get(name, REFUSED_VALUES.get(name))
    body = {"model": MODEL, "messages": ASK, "max_tokens": 2, name: value}
    response = httpx.post(f"{reference_server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == name
    assert error["code"] in ("unsupported_parameter", "unsupported_value")


@pytest.mark.model
@pytest.mark.e2e
@pytest.mark.parametrize(
    "extra",
    [
        {"modalities": ["text"]},
        {"store": False},
        {"metadata": {"k": "v"}},
        {"user": "u-1"},
        {"service_tier": "auto"},
        {"prompt_cache_key": "k"},
        {"safety_identifier": "s"},
    ],
)
def test_an_ignored_field_is_accepted(
    reference_server: ThreadedServer, extra: dict[str, Any]
) -> None:
    body = {"model": MODEL, "messages": ASK, "max_tokens": 2, **extra}
    response = httpx.post(f"{reference_server.url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200
