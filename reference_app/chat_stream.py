"""The SSE frames of a streamed chat completion.

The ``n`` choices stream one after the other, each opened by its role delta. A choice that may
call tools is held back from its first character on when that character opens a call (``[``):
once the call is complete it goes out as OpenAI streams calls, one delta with the call's
``index``, ``id``, ``type``, ``function.name`` and empty ``arguments``, then the arguments in
fragments, then ``finish_reason: "tool_calls"``. A plain answer streams token by token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from .engine import GenerationTimeout
from .errors import APIError
from .runs import DONE, TIMEOUT_EVENT, Run, error_event, sse
from .tools import ToolPlan

# the size of the fragments a call's arguments are streamed in
_FRAGMENT = 16

Delta = tuple[dict[str, Any], str | None, dict[str, Any] | None]  # delta, finish, logprobs


@dataclass
class Choice:
    index: int
    run: Run | None  # choice 0's run is primed; the others start when their turn comes


def chat_logprobs(raw: Any, top: int) -> list[dict[str, Any]]:
    """llama.cpp's completion logprobs in the chat completions shape."""
    if not raw:
        return []
    entries = []
    for token, logprob, alternatives in zip(
        raw.get("tokens") or [],
        raw.get("token_logprobs") or [],
        raw.get("top_logprobs") or [],
        strict=False,
    ):
        ranked = sorted((alternatives or {}).items(), key=lambda kv: kv[1], reverse=True)[:top]
        entries.append(
            {
                "token": token,
                "logprob": logprob,
                "bytes": list(token.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": p, "bytes": list(t.encode())} for t, p in ranked
                ],
            }
        )
    return entries


def collect(
    plan: ToolPlan, text: str, logprobs: list[dict[str, Any]] | None, finish: str
) -> dict[str, Any]:
    """One finished choice: a message with content, or with tool calls."""
    calls = plan.parse(text)
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if calls is not None:
        message = {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None}
        finish = "tool_calls"
    return {
        "message": message,
        "logprobs": {"content": logprobs} if logprobs is not None else None,
        "finish_reason": finish,
    }


def chat_stream(
    choices: list[Choice],
    make_run: Callable[[int], Run],
    plan: ToolPlan,
    head: dict[str, Any],
    top: int | None,
) -> Callable[[bool], AsyncIterator[bytes]]:
    """The stream of ``choices``; ``top`` is the number of top logprobs (``None``: none)."""

    async def stream(include_usage: bool) -> AsyncIterator[bytes]:
        chunk = {**head, "usage": None} if include_usage else head  # as OpenAI: null till the end

        def frame(index: int, delta: Delta) -> bytes:
            body, finish, logprobs = delta
            entry = {"index": index, "delta": body, "logprobs": logprobs, "finish_reason": finish}
            return sse({**chunk, "choices": [entry]})

        prompt = completion = 0
        for choice in choices:
            run = choice.run
            if run is None:
                run = make_run(choice.index)
                try:
                    await run.start()
                except APIError as exc:  # the queue or the deadline, after the stream began
                    yield error_event(exc)
                    yield DONE
                    return
            yield frame(choice.index, ({"role": "assistant", "content": ""}, None, None))
            try:
                async for delta in deltas(run, plan, top):
                    yield frame(choice.index, delta)
            except GenerationTimeout:
                yield TIMEOUT_EVENT
                yield DONE
                return
            prompt, completion = run.prompt_tokens, completion + run.completion_tokens
        if include_usage:
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            yield sse({**chunk, "choices": [], "usage": usage})
        yield DONE

    return stream


async def deltas(run: Run, plan: ToolPlan, top: int | None) -> AsyncIterator[Delta]:
    """One choice's deltas; raises GenerationTimeout mid-way."""
    calling: bool | None = None if plan.calls_possible else False  # None: not known yet
    held: list[str] = []
    held_logprobs: list[dict[str, Any]] = []
    finish = "stop"
    async for chunk in run.chunks():
        raw = chunk["choices"][0]
        text: str = raw["text"]
        entries = chat_logprobs(raw.get("logprobs"), top) if top is not None else []
        finish = raw["finish_reason"] or finish
        if calling is None and text:
            calling = text.startswith("[")
        if calling is not False:
            held.append(text)
            held_logprobs += entries
            continue
        if raw["finish_reason"] is None and not text:
            held_logprobs += entries  # part of a multi-byte character: it comes with the next
            continue
        logprobs = {"content": held_logprobs + entries} if top is not None else None
        held_logprobs = []
        yield ({"content": text} if text else {}), raw["finish_reason"], logprobs
    if calling is False:
        return
    text = "".join(held)
    logprobs = {"content": held_logprobs} if top is not None else None
    calls = plan.parse(text)
    if calls is None:  # a call cut short by max_tokens, or no text at all
        yield ({"content": text} if text else {}), finish, logprobs
        return
    for index, call in enumerate(calls):
        function = call["function"]
        opening = {"name": function["name"], "arguments": ""}
        first = {"index": index, "id": call["id"], "type": "function", "function": opening}
        yield {"tool_calls": [first]}, None, logprobs if index == 0 else None
        arguments = function["arguments"]
        for at in range(0, len(arguments), _FRAGMENT):
            fragment = {"index": index, "function": {"arguments": arguments[at : at + _FRAGMENT]}}
            yield {"tool_calls": [fragment]}, None, None
    yield {}, "tool_calls", None
