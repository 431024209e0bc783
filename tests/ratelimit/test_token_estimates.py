"""The prompt estimate: the text's characters, and the chat template's tokens around them (per
message and per request), from the body of a chat, a Responses API call, a completion."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aimiddleware import ConfigurationError
from aimiddleware._openai import parse_llm_request
from aimiddleware.ratelimit import TokenEstimates

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"

# the defaults: 6 tokens around each message, 25 once per chat
PER_MESSAGE = 6
PER_REQUEST = 25


def estimate(path: str, body: dict[str, Any], estimates: TokenEstimates | None = None) -> int:
    """The prompt tokens the limiter estimates for ``body``."""
    request = parse_llm_request(path, body)
    assert request is not None
    return (estimates or TokenEstimates()).estimate(request)[0]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_the_defaults_are_the_chat_templates_overhead() -> None:
    defaults = TokenEstimates()
    assert (defaults.tokens_per_message, defaults.tokens_per_request) == (6, 25)
    assert defaults.chars_per_token == 4.0


def test_each_chat_message_costs_its_markers_and_the_chat_its_own_once() -> None:
    one = estimate(CHAT, {"messages": [user("x" * 40)], "max_tokens": 5})
    assert one == 40 // 4 + PER_MESSAGE + PER_REQUEST
    three = [user("x" * 40), {"role": "assistant", "content": "y" * 20}, user("z" * 20)]
    assert estimate(CHAT, {"messages": three}) == 80 // 4 + 3 * PER_MESSAGE + PER_REQUEST
    # a message with no text still costs its role markers
    empty = [{"role": "system", "content": ""}, user("")]
    assert estimate(CHAT, {"messages": empty}) == 2 * PER_MESSAGE + PER_REQUEST


def test_a_short_chat_is_reserved_what_smollm2_reads() -> None:
    # SmolLM2 reads 31 prompt tokens for this chat (docs/ratelimit.md): the default system
    # prompt (21), the message (5 + 1) and the assistant prefix (4); the characters alone said 1
    assert estimate(CHAT, {"messages": [user("hi")], "max_tokens": 16}) == 32


def test_the_tools_section_counts_as_a_message_beside_its_schemas() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    schemas = len(json.dumps(tools, separators=(",", ":")))
    body = {"messages": [user("x" * 40)], "tools": tools}
    request = parse_llm_request(CHAT, body)
    assert request is not None
    assert (request.prompt_chars, request.prompt_messages) == (40 + schemas, 2)
    expected = -(-(40 + schemas) // 4) + 2 * PER_MESSAGE + PER_REQUEST
    assert estimate(CHAT, body) == expected
    # an empty list of tools: no section
    toolless = parse_llm_request(CHAT, {"messages": [user("hi")], "tools": []})
    assert toolless is not None
    assert toolless.prompt_messages == 1


def test_earlier_tool_calls_and_results_are_messages_of_their_own() -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    messages = [
        user("hi"),
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c", "content": "ok"},
    ]
    request = parse_llm_request(CHAT, {"messages": messages})
    assert request is not None
    assert request.prompt_messages == 3


def test_a_responses_string_input_is_one_message() -> None:
    request = parse_llm_request(RESPONSES, {"input": "x" * 40})
    assert request is not None
    assert (request.prompt_chars, request.prompt_messages) == (40, 1)
    assert estimate(RESPONSES, {"input": "x" * 40}) == 10 + PER_MESSAGE + PER_REQUEST


def test_each_responses_input_item_and_the_instructions_are_messages() -> None:
    items = [
        {"role": "user", "content": "x" * 20},
        {"role": "user", "content": [{"type": "input_text", "text": "y" * 20}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "ok"},
    ]
    plain = parse_llm_request(RESPONSES, {"input": items})
    instructed = parse_llm_request(RESPONSES, {"input": items, "instructions": "z" * 8})
    assert plain is not None
    assert instructed is not None
    assert plain.prompt_messages == 4
    assert instructed.prompt_messages == 5  # the instructions: a system message
    assert estimate(RESPONSES, {"input": items, "instructions": "z" * 8}) == (
        (20 + 20 + 2 + 2 + 8) // 4 + 5 * PER_MESSAGE + PER_REQUEST
    )
    # empty instructions write no system message
    unsaid = parse_llm_request(RESPONSES, {"input": items, "instructions": ""})
    assert unsaid is not None
    assert unsaid.prompt_messages == 4


def test_responses_tools_are_a_section_of_their_own() -> None:
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    schemas = len(json.dumps(tools, separators=(",", ":")))
    request = parse_llm_request(RESPONSES, {"input": "hi", "tools": tools})
    assert request is not None
    assert (request.prompt_chars, request.prompt_messages) == (2 + schemas, 2)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"prompt": "x" * 40}),
        ("/v1/embeddings", {"input": "x" * 40}),
        ("/v1/embeddings", {"input": ["x" * 20, "y" * 20]}),
    ],
)
def test_no_template_overhead_without_a_chat(path: str, body: dict[str, Any]) -> None:
    request = parse_llm_request(path, body)
    assert request is not None
    assert request.prompt_messages == 0
    assert estimate(path, body) == 10  # the characters alone


def test_the_overhead_is_configurable() -> None:
    body = {"messages": [user("x" * 40), user("y" * 40)], "max_tokens": 7}
    openai_like = TokenEstimates(tokens_per_message=3, tokens_per_request=3)
    assert estimate(CHAT, body, openai_like) == 20 + 2 * 3 + 3
    none = TokenEstimates(tokens_per_message=0, tokens_per_request=0)
    assert estimate(CHAT, body, none) == 20  # the characters alone, as before the template counted
    request = parse_llm_request(CHAT, body)
    assert request is not None
    assert openai_like.estimate(request) == (29, 29 + 7)


def test_prompt_tokens_agrees_with_the_estimate() -> None:
    estimates = TokenEstimates(chars_per_token=3.0, tokens_per_message=4, tokens_per_request=9)
    request = parse_llm_request(CHAT, {"messages": [user("x" * 10)] * 3, "max_tokens": 2, "n": 2})
    assert request is not None
    prompt = estimates.prompt_tokens(request.prompt_chars, request.prompt_messages)
    assert prompt == 10 + 3 * 4 + 9
    assert estimates.estimate(request) == (prompt, estimates.reservation(prompt, 2, 2))
    assert estimates.prompt_tokens(30) == 10  # no messages: no template


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("tokens_per_message", -1),
        ("tokens_per_message", 1.5),
        ("tokens_per_message", True),
        ("tokens_per_request", -3),
        ("tokens_per_request", "25"),
    ],
)
def test_a_bad_overhead_is_refused(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=option):
        TokenEstimates(**{option: value})
