"""The types of the LLM facts the context shares: the parsed request, and the usage stated."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LLMRequest", "LLMUsage"]


@dataclass(slots=True)
class LLMRequest:
    """The fields of an OpenAI-compatible request body that limits and telemetry use."""

    operation: str
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    prompt_chars: int = 0  # characters of prompt text, for token estimates
    # messages the chat template wraps (each costs its role markers): chat messages, Responses
    # input items and instructions, the tools' section; 0 where no template applies
    prompt_messages: int = 0
    choices: int = 1  # `n`: each choice is a completion of up to max_tokens


@dataclass(frozen=True, slots=True)
class LLMUsage:
    """The token usage the model stated for one request, as a middleware that read it settled it."""

    input_tokens: int | None
    output_tokens: int | None
