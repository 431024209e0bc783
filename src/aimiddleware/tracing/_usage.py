"""The token usage a request is known by: stated by the response, or handed over by the limiter."""

from __future__ import annotations

from typing import Final, NamedTuple

from .._asgi import Scope, get_annotations
from .._openai import LLMResponse, get_llm_usage

# an idempotent replay (or a request following another's stream) produced no new tokens
IDEMPOTENCY_OUTCOME: Final = "aimiddleware.idempotency.outcome"
NO_NEW_TOKENS: Final = frozenset({"replayed", "followed"})
USAGE_REPLAYED: Final = "aimiddleware.tracing.usage_replayed"


class Usage(NamedTuple):
    input_tokens: int | None = None
    output_tokens: int | None = None
    replayed: bool = False


NO_USAGE: Final = Usage()
REPLAYED: Final = Usage(replayed=True)


def resolve_usage(scope: Scope, response: LLMResponse | None) -> Usage:
    """What the response stated, else what the rate limiter settled and handed over (it may
    have removed a stream's usage chunk before the stream reached this middleware); no usage
    at all for a replay.

    >>> resolve_usage({}, LLMResponse(input_tokens=3, output_tokens=5))
    Usage(input_tokens=3, output_tokens=5, replayed=False)
    """
    if get_annotations(scope).get(IDEMPOTENCY_OUTCOME) in NO_NEW_TOKENS:
        return REPLAYED
    if response is not None and (
        response.input_tokens is not None or response.output_tokens is not None
    ):
        return Usage(response.input_tokens, response.output_tokens)
    handed = get_llm_usage(scope)
    if handed is not None:
        return Usage(handed.input_tokens, handed.output_tokens)
    return NO_USAGE
