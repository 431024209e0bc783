"""What the middlewares read from OpenAI-compatible traffic, without buffering a stream.

:func:`parse_llm_request` reads the (already shared) request JSON once; :class:`LLMResponse`
accumulates what a response says about itself (id, model, finish reasons, token usage), fed
either one JSON body or the stream's events as they pass.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final

from ._responses import RESPONSES_SUFFIX, observe_responses, parse_responses_request

# LLMRequest, LLMUsage and the usage accessors live in aimiddleware.context; they stay
# importable from here for the modules and tests that import them so
from .context import LLM_REQUEST_KEY, LLMRequest, LLMUsage, get_llm_usage, set_llm_usage

_NOT_LLM: Final = object()

__all__ = [
    "OPERATIONS",
    "LLMRequest",
    "LLMResponse",
    "LLMUsage",
    "get_llm_usage",
    "is_usage_only_chunk",
    "llm_operation",
    "parse_llm_request",
    "set_llm_usage",
    "shared_llm_request",
    "sum_tokens",
    "usage_tokens",
]


# route suffix -> gen_ai.operation.name
OPERATIONS: Final = {
    "/chat/completions": "chat",
    "/completions": "text_completion",
    "/embeddings": "embeddings",
    "/responses": "chat",  # the Responses API: a chat, as the GenAI conventions map it
}


def llm_operation(path: str) -> str | None:
    """The GenAI operation of an OpenAI-compatible path (any prefix: ``/v1``, ``/openai/v1``)."""
    for suffix, operation in OPERATIONS.items():
        if path.endswith(suffix):
            return operation
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    if isinstance(value, dict):
        return _text_chars(value.get("content")) + _text_chars(value.get("text"))
    return 0


_COMPACT: Final = (",", ":")


def _chat_prompt(messages: Any, tools: Any) -> tuple[int, int]:
    """Characters of a chat's prompt text, tools' schemas and earlier tool calls (the model
    reads them too), and the messages the chat template wraps (the tools' section is one).

    One pass, the usual message (a ``content`` string) read without a call: this runs for
    every chat request the rate limiter sees.
    """
    chars = 0
    count = 0
    if isinstance(tools, list):
        # parsed from JSON, so it serialises again
        chars = len(json.dumps(tools, separators=_COMPACT))
        count = 1 if tools else 0
    if not isinstance(messages, list):
        return chars + _text_chars(messages), count
    for message in messages:
        if not isinstance(message, dict):
            chars += _text_chars(message)
            continue
        content = message.get("content")
        chars += len(content) if isinstance(content, str) else _text_chars(content)
        text = message.get("text")
        if text is not None:
            chars += _text_chars(text)
        if "tool_calls" in message:
            chars += len(json.dumps(message["tool_calls"], separators=_COMPACT))
    return chars, count + len(messages)


def parse_llm_request(path: str, body: Any) -> LLMRequest | None:
    """Read an OpenAI-compatible request body; ``None`` if the path or body is not one."""
    operation = llm_operation(path)
    if operation is None or not isinstance(body, dict):
        return None
    if path.endswith(RESPONSES_SUFFIX):  # no call: this runs for every chat request
        return parse_responses_request(body)
    request = LLMRequest(operation=operation)
    model = body.get("model")
    request.model = model if isinstance(model, str) else None
    request.stream = body.get("stream") is True
    options = body.get("stream_options")
    request.include_usage = isinstance(options, dict) and options.get("include_usage") is True
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
        request.max_tokens = limit
    choices = body.get("n")
    if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1:
        request.choices = min(choices, 128)  # OpenAI refuses more
    request.temperature = _number(body.get("temperature"))
    request.top_p = _number(body.get("top_p"))
    if operation == "chat":
        request.prompt_chars, request.prompt_messages = _chat_prompt(
            body.get("messages"), body.get("tools")
        )
    elif operation == "text_completion":
        request.prompt_chars = _text_chars(body.get("prompt"))
    else:
        request.prompt_chars = _text_chars(body.get("input"))
    return request


def shared_llm_request(scope: MutableMapping[str, Any], path: str, body: Any) -> LLMRequest | None:
    """:func:`parse_llm_request`, run at most once per request and shared through the scope
    (the rate limiter and tracing both read it). ``body`` is the shared request JSON
    (``json_body(scope)``); callers must treat the result as read-only.
    """
    cached = scope.get(LLM_REQUEST_KEY)
    if cached is not None:
        return None if cached is _NOT_LLM else cached
    request = parse_llm_request(path, body)
    scope[LLM_REQUEST_KEY] = _NOT_LLM if request is None else request
    return request


@dataclass(slots=True)
class LLMResponse:
    """Facts a response states about itself, accumulated chunk by chunk."""

    id: str | None = None
    model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None  # of the input tokens, those read from a prompt cache
    chunks: int = 0  # data events carrying choices
    done: bool = False  # saw ``data: [DONE]``
    error: bool = False  # saw an error object

    def observe(self, payload: Any) -> None:
        """Take in one parsed response object (a whole JSON body or one stream chunk)."""
        if not isinstance(payload, dict):
            return
        # each field read once: this runs for every chunk of a stream
        get = payload.get
        if get("error"):
            self.error = True
        value = get("id")
        if isinstance(value, str):
            self.id = value
        value = get("model")
        if isinstance(value, str):
            self.model = value
        choices = get("choices")
        if choices is None and observe_responses(self, payload):
            return  # a Responses API event or response object (no choices: one check on a chunk)
        if isinstance(choices, list) and choices:
            self.chunks += 1
            for choice in choices:
                if isinstance(choice, dict):
                    reason = choice.get("finish_reason")
                    if isinstance(reason, str):
                        self.finish_reasons.append(reason)
        usage = get("usage")
        if isinstance(usage, dict):
            prompt, completion = usage_tokens(usage)
            if prompt is not None:
                self.input_tokens = prompt
            if completion is not None:
                self.output_tokens = completion
            cached = cached_tokens(usage)
            if cached is not None:
                self.cached_tokens = cached

    @property
    def total_tokens(self) -> int | None:
        """Input plus output tokens, or ``None`` when the response stated neither."""
        return sum_tokens(self.input_tokens, self.output_tokens)

    def observe_event_data(self, data: str | None) -> Any:
        """Take in the data of one stream event; returns the parsed object (or ``None``)."""
        if data is None:
            return None
        if data == "[DONE]":
            self.done = True
            return None
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):  # a hostile upstream can nest past the stack
            return None
        self.observe(payload)
        return payload

    def observe_body(self, body: bytes) -> None:
        """Take in a whole (non-streamed) JSON response body."""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return
        self.observe(payload)


def usage_tokens(usage: dict[str, Any]) -> tuple[int | None, int | None]:
    """(input, output) tokens of a ``usage`` object: chat/completions' names, else the
    Responses API's.

    >>> usage_tokens({"prompt_tokens": 3, "completion_tokens": 5})
    (3, 5)
    """
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return (
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
    )


def cached_tokens(usage: dict[str, Any]) -> int | None:
    """The input tokens a ``usage`` object says were read from a prompt cache, if it says.

    >>> cached_tokens({"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 4}})
    4
    """
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def sum_tokens(prompt: int | None, completion: int | None) -> int | None:
    """``prompt + completion``, a missing side counting 0; ``None`` when both are missing."""
    if prompt is None and completion is None:
        return None
    return (prompt or 0) + (completion or 0)


def is_usage_only_chunk(payload: Any) -> bool:
    """The final chunk OpenAI sends for ``stream_options.include_usage``: no choices, a usage."""
    return (
        isinstance(payload, dict)
        and payload.get("choices") == []
        and isinstance(payload.get("usage"), dict)
    )
