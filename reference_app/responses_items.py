"""The items of the Responses API: what a request's ``input`` may hold, the chat messages the
model reads them as, and the output items an answer becomes.

Items are kept in one normalised form, which is also how a stored conversation holds them:
``message`` (``role`` and one text part: ``input_text``, or ``output_text`` for the assistant),
``function_call`` (``call_id``, ``name``, ``arguments``) and ``function_call_output``
(``call_id``, ``output``). Everything else (images, files, reasoning, hosted tools' calls, item
references) is refused with 400 ``unsupported_value`` naming the item.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from .errors import APIError
from .schemas import ChatMessage, FunctionCall, ToolCall
from .tools import ToolPlan

ROLES = ("system", "developer", "user", "assistant")
_TEXT_PARTS = {"input_text", "output_text", "text"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def input_items(raw: Any) -> list[dict[str, Any]]:
    """The request's ``input``, a string or a list of items, in the normalised form."""
    if isinstance(raw, str):
        return [_message("user", raw)]
    if not isinstance(raw, list) or not raw:
        raise APIError(
            400, "input must be a string or a non-empty list of input items.", param="input"
        )
    return [_item(f"input[{i}]", item) for i, item in enumerate(raw)]


def check_outputs(history: list[dict[str, Any]], items: list[dict[str, Any]]) -> None:
    """Every ``function_call_output`` answers a call made earlier in the conversation."""
    calls = {item["call_id"] for item in history if item["type"] == "function_call"}
    for index, item in enumerate(items):
        if item["type"] == "function_call":
            calls.add(item["call_id"])
        elif item["type"] == "function_call_output" and item["call_id"] not in calls:
            raise APIError(
                400,
                f"No tool call found for function call output with call_id {item['call_id']}.",
                param=f"input[{index}].call_id",
            )


def _item(where: str, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise APIError(400, f"{where} must be an object.", param=where)
    kind = item.get("type", "message")  # a message may leave out its type
    if kind == "message":
        role = item.get("role")
        if role not in ROLES:
            raise APIError(
                400,
                f"Invalid value for '{where}.role': expected one of {', '.join(ROLES)}.",
                param=f"{where}.role",
            )
        return _message(role, _text(f"{where}.content", item.get("content")))
    if kind == "function_call":
        fields = {name: _string(where, item, name) for name in ("call_id", "name", "arguments")}
        return {"type": "function_call", **fields}
    if kind == "function_call_output":
        call_id = _string(where, item, "call_id")
        output = _text(f"{where}.output", item.get("output"))
        return {"type": "function_call_output", "call_id": call_id, "output": output}
    raise APIError(
        400,
        f"Unsupported value: '{where}.type': this server takes message, function_call and "
        f"function_call_output items, not {kind!r}.",
        param=f"{where}.type",
        code="unsupported_value",
    )


def _string(where: str, item: dict[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or (name != "arguments" and not value):
        raise APIError(400, f"{where}.{name} must be a non-empty string.", param=f"{where}.{name}")
    return value


def _text(where: str, content: Any) -> str:
    """A string, or a list of text parts joined; any other part is refused."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise APIError(400, f"{where} must be a string or a list of parts.", param=where)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            raise APIError(
                400,
                f"Unsupported value: '{where}[{j}]': this server reads text parts only "
                "(input_text, output_text).",
                param=f"{where}[{j}]",
                code="unsupported_value",
            )
        texts.append(part["text"])
    return "".join(texts)


def _message(role: str, text: str) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def chat_messages(instructions: str | None, items: list[dict[str, Any]]) -> list[ChatMessage]:
    """The conversation as chat messages: the instructions first, as a system message; an
    assistant's function calls (with the text before them) as one message with ``tool_calls``,
    their outputs as ``tool`` messages."""
    messages = [ChatMessage(role="system", content=instructions)] if instructions else []
    for item in items:
        if item["type"] == "message":
            text = "".join(part["text"] for part in item["content"])
            messages.append(ChatMessage(role=item["role"], content=text))
        elif item["type"] == "function_call":
            call = ToolCall(
                id=item["call_id"],
                function=FunctionCall(name=item["name"], arguments=item["arguments"]),
            )
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":
                last.tool_calls = [*(last.tool_calls or []), call]
            else:
                messages.append(ChatMessage(role="assistant", tool_calls=[call]))
        else:
            messages.append(
                ChatMessage(role="tool", content=item["output"], tool_call_id=item["call_id"])
            )
    return messages


def output_items(plan: ToolPlan, text: str, finish: str) -> list[dict[str, Any]]:
    """What an answer becomes: its function calls, or one assistant message (``incomplete``
    when the answer was cut short)."""
    calls = plan.parse(text)
    if calls is not None:
        return [function_call_item(call, "completed") for call in calls]
    status = "incomplete" if finish == "length" else "completed"
    return [message_item(new_id("msg"), text, status)]


def message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    """An assistant message; ``text=None``: just opened, without its text part yet."""
    content = [] if text is None else [text_part(text)]
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(call: dict[str, Any], status: str) -> dict[str, Any]:
    """A call (in Chat Completions' shape, as the tool plan parses it) as an output item."""
    function = call["function"]
    return {
        "id": "fc_" + call["id"].removeprefix("call_"),
        "type": "function_call",
        "status": status,
        "call_id": call["id"],
        "name": function["name"],
        "arguments": function["arguments"],
    }


def as_input(item: dict[str, Any]) -> dict[str, Any]:
    """An output item in the normalised form, as the next turn of the conversation reads it."""
    if item["type"] == "function_call":
        return {
            "type": "function_call",
            "call_id": item["call_id"],
            "name": item["name"],
            "arguments": item["arguments"],
        }
    return _message("assistant", "".join(part["text"] for part in item["content"]))


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The Responses API's usage: no cache is reported, the model does not reason."""
    return {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_tokens + completion_tokens,
    }


class Draft:
    """A response under way: the fields it echoes from its request, in each of its states."""

    def __init__(self, head: dict[str, Any]) -> None:
        self.head = head

    @property
    def id(self) -> str:
        return str(self.head["id"])

    def state(
        self,
        status: str,
        output: list[dict[str, Any]],
        *,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The response object as it stands: ``in_progress``, ``completed``, ``incomplete``
        (cut short by ``max_output_tokens``) or ``failed``."""
        done = status in ("completed", "incomplete")
        return {
            **self.head,
            "status": status,
            "completed_at": int(time.time()) if done else None,
            "error": error,
            "incomplete_details": (
                {"reason": "max_output_tokens"} if status == "incomplete" else None
            ),
            "output": output,
            "usage": usage,
        }

    def finished(
        self, output: list[dict[str, Any]], finish: str, usage: dict[str, Any]
    ) -> dict[str, Any]:
        return self.state("incomplete" if finish == "length" else "completed", output, usage=usage)
