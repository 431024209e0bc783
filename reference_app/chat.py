"""``POST /v1/chat/completions``: n choices, tools, logprobs, streamed or not."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from .chat_stream import Choice, chat_logprobs, chat_stream, collect
from .checks import (
    check_logprobs,
    check_model,
    deadline_for,
    grammar,
    ready_engine,
    room_left,
    sampling_for,
)
from .engine import Engine, GenerationTimeout, Sampling
from .errors import APIError, generation_timeout
from .runs import Run
from .schemas import ChatCompletionRequest
from .settings import Settings
from .tools import plan_for, template_messages

router = APIRouter()

# OpenAI request fields this server refuses (400 unsupported_parameter) when they ask for
# something it cannot do; what each would ask for names it in the error
REFUSED: dict[str, str] = {
    "audio": "audio output",
    "functions": "the deprecated `functions` (send `tools`)",
    "function_call": "the deprecated `function_call` (send `tool_choice`)",
    "moderation": "moderation of the answer",
    "prediction": "predicted outputs",
    "reasoning_effort": "reasoning effort (the model does not reason)",
    "verbosity": "verbosity (the model has no such control)",
    "web_search_options": "web search",
}

# OpenAI request fields accepted and ignored, each for a reason docs/reference_app.md gives
IGNORED = frozenset(
    {
        "metadata",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "safety_identifier",
        "service_tier",
        "store",
        "user",
    }
)


def check_fields(body: ChatCompletionRequest) -> None:
    """Refuse the OpenAI fields this server cannot honour; never accept one and ignore it."""
    extra = body.model_extra or {}
    for name, what in REFUSED.items():
        if extra.get(name) is not None:
            raise APIError(
                400,
                f"Unsupported parameter: '{name}': this server does not support {what}.",
                param=name,
                code="unsupported_parameter",
            )
    modalities = extra.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise APIError(
            400,
            "Unsupported value: 'modalities': this server answers with text only.",
            param="modalities",
            code="unsupported_value",
        )
    if extra.get("store") is True:
        raise APIError(
            400,
            "Unsupported value: 'store': this server keeps no completions.",
            param="store",
            code="unsupported_value",
        )


def _runs(
    engine: Engine, tokens: list[int], sampling: Sampling, deadline: float
) -> Callable[[int], Run]:
    """Choice ``i``'s generation: its own seed (seed + i) so that seeded choices differ, and
    the request's one deadline."""

    def run(index: int) -> Run:
        seed = sampling.seed + index if sampling.seed is not None else None
        return Run(engine, tokens, replace(sampling, seed=seed), deadline)

    return run


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    engine = ready_engine(request)
    settings: Settings = request.app.state.settings
    check_model(request, body.model)
    check_fields(body)
    plan = plan_for(body)
    if plan.calls_possible and body.response_format and body.response_format.type != "text":
        raise APIError(
            400,
            "response_format cannot be combined with tools that may be called.",
            param="response_format",
        )
    tokens, stop = engine.chat_prompt(template_messages(body.messages, plan))
    sampling = sampling_for(engine, body, room_left(settings, len(tokens), "messages"), stop)
    sampling.grammar = plan.grammar() if plan.calls_possible else grammar(body)
    top = body.top_logprobs or 0
    if body.logprobs:
        check_logprobs(engine)
        sampling.logprobs = max(top, 1)
    make_run = _runs(engine, tokens, sampling, deadline_for(settings))
    first = make_run(0)
    await first.start()  # queue and deadline errors get their status before any byte
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": request.app.state.model_id,
        "system_fingerprint": request.app.state.fingerprint,
    }
    logprobs = top if body.logprobs else None
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        choices = [Choice(i, first if i == 0 else None) for i in range(body.n)]
        stream = chat_stream(
            choices, make_run, plan, {**base, "object": "chat.completion.chunk"}, logprobs
        )
        return StreamingResponse(stream(include_usage), media_type="text/event-stream")
    answers, completion = [], 0
    for index in range(body.n):
        run = first if index == 0 else make_run(index)
        if index:
            await run.start()
        text: list[str] = []
        entries: list[dict[str, Any]] = []
        finish = "stop"
        try:
            async for chunk in run.chunks():
                choice = chunk["choices"][0]
                text.append(choice["text"])
                if logprobs is not None:
                    entries += chat_logprobs(choice.get("logprobs"), logprobs)
                finish = choice["finish_reason"] or finish
        except GenerationTimeout:
            raise generation_timeout() from None
        completion += run.completion_tokens
        kept = entries if logprobs is not None else None
        answers.append({"index": index, **collect(plan, "".join(text), kept, finish)})
    return {
        **base,
        "object": "chat.completion",
        "choices": answers,
        "usage": {
            "prompt_tokens": first.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": first.prompt_tokens + completion,
        },
    }
