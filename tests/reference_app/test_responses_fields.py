"""Every Responses API request field is honoured, ignored for a documented reason, or refused:
none is accepted and silently ignored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openai.types.responses.response_create_params import ResponseCreateParamsBase

from reference_app.responses import IGNORED, REFUSED, REFUSED_VALUES
from reference_app.schemas import ResponseRequest

from ..servers import ThreadedServer
from .conftest import MODEL, documented_fields

# the SDK declares `stream` in the streaming and non-streaming variants of the base
OPENAI_FIELDS = (
    ResponseCreateParamsBase.__required_keys__
    | ResponseCreateParamsBase.__optional_keys__
    | {"stream"}
)
HONOURED = set(ResponseRequest.model_fields) - IGNORED
EXAMPLES: dict[str, Any] = {
    "access_programs": {"cyber": "standard"},
    "background_options": {"mode": "default"},
    "context_management": [{"type": "compaction"}],
    "conversation": "conv_123",
    "image": {"context_compression": "enabled"},
    "moderation": {"model": "omni-moderation-latest"},
    "prompt": {"id": "pmpt_123"},
    "reasoning": {"effort": "low"},
}
# a value of each field refused for some values only
REFUSED_EXAMPLES: dict[str, Any] = {
    "background": True,
    "include": ["message.output_text.logprobs"],
    "top_logprobs": 2,
    "truncation": "auto",
}


def test_every_openai_field_has_a_decision() -> None:
    decided = HONOURED | IGNORED | set(REFUSED) | set(REFUSED_VALUES)
    assert OPENAI_FIELDS - decided == set()
    # and the request model declares no field OpenAI does not have
    assert set(ResponseRequest.model_fields) <= OPENAI_FIELDS


def test_the_docs_table_lists_every_field() -> None:
    documented = documented_fields("Responses API request fields")
    assert set(documented) == OPENAI_FIELDS
    assert {f for f, d in documented.items() if d == "ignored"} == IGNORED
    assert {f for f, d in documented.items() if d == "refused"} == set(REFUSED)


@pytest.mark.model
@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(REFUSED) + sorted(REFUSED_VALUES))
def test_a_refused_field_is_refused(reference_server: ThreadedServer, name: str) -> None:
    value = EXAMPLES.get(name, REFUSED_EXAMPLES.get(name))
    body = {"model": MODEL, "input": "Hi", "max_output_tokens": 2, name: value}
    response = httpx.post(f"{reference_server.url}/v1/responses", json=body, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == name
    assert error["code"] in ("unsupported_parameter", "unsupported_value")


@pytest.mark.model
@pytest.mark.e2e
@pytest.mark.parametrize(
    "extra",
    [
        {"background": False},
        {"include": []},
        {"truncation": "disabled"},
        {"top_logprobs": 0},
        {"reasoning": None},
        {"store": False},
        {"metadata": {"k": "v"}},
        {"user": "u-1"},
        {"service_tier": "auto"},
        {"prompt_cache_key": "k"},
        {"safety_identifier": "s"},
        {"max_tool_calls": 3},
        {"stream_options": {"include_obfuscation": False}},
        {"text": {"verbosity": "medium"}},
    ],
)
def test_an_accepted_field_is_accepted(
    reference_server: ThreadedServer, extra: dict[str, Any]
) -> None:
    body = {"model": MODEL, "input": "Hi", "max_output_tokens": 2, **extra}
    response = httpx.post(f"{reference_server.url}/v1/responses", json=body, timeout=30)
    assert response.status_code == 200
    if "metadata" in extra:
        assert response.json()["metadata"] == extra["metadata"]
