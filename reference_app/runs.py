"""One generation on the engine, and the SSE frames a streamed completion is written in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from .engine import Engine, GenerationTimeout, QueueFull, Sampling
from .errors import APIError, generation_timeout, overloaded

DONE = b"data: [DONE]\n\n"


def sse(payload: Any) -> bytes:
    """One ``data:`` event carrying ``payload`` as JSON."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def error_event(error: APIError) -> bytes:
    """The event that ends a stream which failed after it began (``[DONE]`` follows it)."""
    return sse(error.info.envelope())


TIMEOUT_EVENT = error_event(generation_timeout())


class Run:
    """One generation: primes the first chunk so queue and deadline errors get their status."""

    def __init__(
        self, engine: Engine, tokens: list[int], sampling: Sampling, deadline: float
    ) -> None:
        self.stream = engine.generate(tokens, sampling, deadline=deadline)
        self.prompt_tokens = len(tokens)
        self.completion_tokens = 0
        self.first: dict[str, Any] | None = None

    async def start(self) -> None:
        try:
            self.first = await anext(self.stream, None)
        except QueueFull as exc:
            raise overloaded(exc) from None
        except GenerationTimeout:
            raise generation_timeout() from None

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The primed chunk, then the rest; raises GenerationTimeout mid-way."""
        try:
            if self.first is None:
                return
            yield self._count(self.first)
            async for chunk in self.stream:
                yield self._count(chunk)
        finally:
            await self.stream.aclose()

    async def text(self) -> tuple[str, str]:
        """The whole answer and its finish reason (a non-streamed completion); a deadline
        passed mid-way is the generation timeout's error."""
        text: list[str] = []
        finish = "stop"
        try:
            async for chunk in self.chunks():
                text.append(chunk["choices"][0]["text"])
                finish = chunk["choices"][0]["finish_reason"] or finish
        except GenerationTimeout:
            raise generation_timeout() from None
        return "".join(text), finish

    def _count(self, chunk: dict[str, Any]) -> dict[str, Any]:
        if chunk["choices"][0]["finish_reason"] is None:
            self.completion_tokens += 1
        return chunk

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def completion_stream(run: Run, base: dict[str, Any], include_usage: bool) -> AsyncIterator[bytes]:
    """The frames of a streamed ``/v1/completions`` answer."""

    def choice(raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "index": 0,
            "text": raw["text"],
            "logprobs": raw.get("logprobs"),
            "finish_reason": raw["finish_reason"],
        }

    return _events(run, base, include_usage, choice)


async def _events(
    run: Run,
    head: dict[str, Any],
    include_usage: bool,
    choice: Callable[[dict[str, Any]], dict[str, Any]],
) -> AsyncIterator[bytes]:
    """The SSE frames of a stream: one per token, the usage chunk if asked, then ``[DONE]``.

    A deadline that passes mid-stream ends it with an error event, then ``[DONE]``.
    """
    if include_usage:
        head = {**head, "usage": None}  # OpenAI sends usage: null on every chunk but the last
    try:
        async for chunk in run.chunks():
            raw = chunk["choices"][0]
            if raw["finish_reason"] is None and not raw["text"]:
                continue  # part of a multi-byte character: it comes with the next token
            yield sse({**head, "choices": [choice(raw)]})
    except GenerationTimeout:
        yield TIMEOUT_EVENT
        yield DONE
        return
    if include_usage:
        yield sse({**head, "choices": [], "usage": run.usage()})
    yield DONE
