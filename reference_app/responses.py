"""``POST /v1/responses`` (streamed or not), ``GET`` and ``DELETE /v1/responses/{id}``.

A response is generated as a chat completion is: the same tool plan and grammar (tools.py),
the same prompt from the chat template, the same run (runs.py). The items of the Responses API
are in responses_items.py, its typed stream in responses_stream.py, stored responses in
response_store.py.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from .checks import check_model, deadline_for, format_grammar, ready_engine, room_left
from .engine import Sampling
from .errors import APIError
from .response_store import ResponseStore, owner_of
from .responses_items import (
    Draft,
    as_input,
    chat_messages,
    check_outputs,
    input_items,
    new_id,
    output_items,
    usage,
)
from .responses_stream import response_events
from .runs import Run
from .schemas import ResponseFormat, ResponseRequest
from .settings import Settings
from .tools import ToolPlan, make_plan, template_messages

router = APIRouter()

# request fields refused (400 unsupported_parameter) whenever they carry a value; what each
# would ask for names it in the error
REFUSED: dict[str, str] = {
    "access_programs": "access programs",
    "background_options": "background responses",
    "context_management": "context management (compaction)",
    "conversation": "conversations (continue with `previous_response_id`)",
    "image": "image input",
    "moderation": "moderation of the answer",
    "prompt": "stored prompt templates",
    "reasoning": "reasoning (the model does not reason)",
}
# refused (400 unsupported_value) for the values that ask for something; the others (false,
# an empty list, 0, "disabled") are what the server does anyway
REFUSED_VALUES: dict[str, str] = {
    "background": "responses are generated while the request waits (no `background`)",
    "include": "no extra output data can be included",
    "top_logprobs": "the Responses API's logprobs are not served (Chat Completions has them)",
    "truncation": "`auto` truncation is not done: an input too long is a 400",
}
# accepted and ignored, each for a reason docs/reference_app.md gives
IGNORED = frozenset(
    {
        "max_tool_calls",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "safety_identifier",
        "service_tier",
        "stream_options",
        "user",
    }
)


def check_fields(body: ResponseRequest) -> None:
    """Refuse the fields this server cannot honour; never accept one and ignore it."""
    extra = body.model_extra or {}
    for name, what in REFUSED.items():
        if _asks(extra.get(name)):
            raise APIError(
                400,
                f"Unsupported parameter: '{name}': this server does not support {what}.",
                param=name,
                code="unsupported_parameter",
            )
    asked = {
        "background": extra.get("background") is True,
        "include": bool(extra.get("include")),
        "top_logprobs": bool(extra.get("top_logprobs")),
        "truncation": body.truncation == "auto",
    }
    verbosity = body.text.verbosity if body.text else None
    if verbosity not in (None, "medium"):
        asked["text.verbosity"] = True
    for name, refused in asked.items():
        if refused:
            what = REFUSED_VALUES.get(name, "the model has no verbosity control")
            raise APIError(
                400, f"Unsupported value: '{name}': {what}.", param=name, code="unsupported_value"
            )


def _asks(value: Any) -> bool:
    """Whether a field's value asks for anything: ``null``, ``{}`` and an object of nulls
    (``{"effort": null}``) do not."""
    if isinstance(value, dict):
        return any(v is not None for v in value.values())
    return value is not None


def _format(body: ResponseRequest) -> ResponseFormat | None:
    fmt = body.text.format if body.text else None
    return fmt.as_response_format() if fmt is not None else None


def _head(body: ResponseRequest, request: Request, plan: ToolPlan) -> dict[str, Any]:
    """The fields a response echoes from its request, in every state."""
    fmt = body.text.format if body.text and body.text.format else None
    text_format = fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}
    tools = [
        {
            "type": "function",
            "name": f["name"],
            "description": f.get("description"),
            "parameters": f.get("parameters"),
            "strict": True,  # the grammar holds every call to its schema
        }
        for f in plan.functions
    ]
    extra = body.model_extra or {}
    return {
        "id": new_id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "background": False,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": extra.get("max_tool_calls"),
        "metadata": body.metadata or {},
        "model": request.app.state.model_id,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.store is not False,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "text": {"format": text_format, "verbosity": "medium"},
        "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
        "tools": tools,
        "top_logprobs": 0,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "truncation": "disabled",
        "user": body.user,
    }


@router.post("/v1/responses", response_model=None)
async def create_response(body: ResponseRequest, request: Request) -> Any:
    engine = ready_engine(request)
    settings: Settings = request.app.state.settings
    store: ResponseStore = request.app.state.responses
    check_model(request, body.model)
    check_fields(body)
    items = input_items(body.input)
    plan = make_plan(body.tools, body.tool_choice, body.parallel_tool_calls, flat=True)
    fmt = _format(body)
    if plan.calls_possible and fmt is not None and fmt.type != "text":
        raise APIError(
            400,
            "text.format cannot be combined with tools that may be called.",
            param="text.format",
        )
    owner = owner_of(request.scope)
    history: list[dict[str, Any]] = []
    if body.previous_response_id:
        record = await store.load(owner, body.previous_response_id)
        if record is None:
            raise APIError(
                404,
                f"Previous response with id '{body.previous_response_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        history = record["conversation"]
    check_outputs(history, items)
    messages = template_messages(chat_messages(body.instructions, [*history, *items]), plan)
    tokens, stop = engine.chat_prompt(messages)
    room = room_left(settings, len(tokens), "input")
    limit = body.max_output_tokens
    sampling = Sampling(
        max_tokens=min(limit, room) if limit else room,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=stop,
        grammar=plan.grammar() if plan.calls_possible else format_grammar(fmt, "text.format"),
    )
    run = Run(engine, tokens, sampling, deadline_for(settings))
    await run.start()  # queue and deadline errors get their status before any byte
    draft = Draft(_head(body, request, plan))

    async def keep(response: dict[str, Any]) -> None:
        if body.store is not False:
            outputs = [as_input(item) for item in response["output"]]
            await store.save(owner, response, [*history, *items, *outputs])

    if body.stream:
        events = response_events(draft, run, plan, keep)
        return StreamingResponse(events, media_type="text/event-stream")
    text, finish = await run.text()
    output = output_items(plan, text, finish)
    response = draft.finished(output, finish, usage(run.prompt_tokens, run.completion_tokens))
    await keep(response)
    return response


def _not_found(response_id: str) -> APIError:
    return APIError(404, f"Response with id '{response_id}' not found.", param="response_id")


@router.get("/v1/responses/{response_id}", response_model=None)
async def retrieve_response(response_id: str, request: Request) -> Any:
    if request.query_params.get("stream", "false").lower() not in ("false", "0"):
        raise APIError(
            400,
            "Unsupported value: 'stream': a stored response is retrieved whole.",
            param="stream",
            code="unsupported_value",
        )
    store: ResponseStore = request.app.state.responses
    record = await store.load(owner_of(request.scope), response_id)
    if record is None:
        raise _not_found(response_id)
    return record["response"]


@router.delete("/v1/responses/{response_id}", response_model=None)
async def delete_response(response_id: str, request: Request) -> Any:
    store: ResponseStore = request.app.state.responses
    if not await store.delete(owner_of(request.scope), response_id):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response", "deleted": True}
