"""The GenAI request attributes, read from the shared request JSON when the span ends.

The rate limiter parses the whole request (prompt size included, for its token estimates) and
shares it: when it ran, its parse is used. Alone, tracing reads only the five fields it records,
a fraction of the full parse.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..context import Scope, get_llm_request, json_body

__all__ = ["GenAIRequest", "RequestFields", "llm_request"]


class GenAIRequest(Protocol):
    """What tracing reads of a request (``aimiddleware.context.LLMRequest`` is one)."""

    @property
    def model(self) -> str | None: ...
    @property
    def stream(self) -> bool: ...
    @property
    def max_tokens(self) -> int | None: ...
    @property
    def temperature(self) -> float | None: ...
    @property
    def top_p(self) -> float | None: ...


class RequestFields:
    """The fields of :class:`GenAIRequest`, read by :func:`llm_request` itself."""

    __slots__ = ("max_tokens", "model", "stream", "temperature", "top_p")

    def __init__(
        self,
        model: str | None,
        stream: bool,
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
    ) -> None:
        self.model = model
        self.stream = stream
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def llm_request(scope: Scope) -> GenAIRequest | None:
    """The request's model, stream flag, token limit and sampling parameters, read as
    ``aimiddleware._openai.parse_llm_request`` reads them; ``None`` when the body is not a JSON
    object.

    >>> scope = {"aimiddleware.body": b'{"model": "m", "max_tokens": 8, "temperature": 1}'}
    >>> request = llm_request(scope)
    >>> request.model, request.stream, request.max_tokens, request.temperature, request.top_p
    ('m', False, 8, 1.0, None)
    """
    shared = get_llm_request(scope)
    if shared is not None:
        return shared
    body = json_body(scope)
    if not isinstance(body, dict):
        return None
    model = body.get("model")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is None:  # the Responses API's name for it
        limit = body.get("max_output_tokens")
    return RequestFields(
        model if isinstance(model, str) else None,
        body.get("stream") is True,
        limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 else None,
        _number(body.get("temperature")),
        _number(body.get("top_p")),
    )
