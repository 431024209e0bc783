"""Function calling on a model whose chat template has no tool format.

The functions are described to the model in a system message, and a llama.cpp grammar built from
their JSON Schemas constrains what it writes: a call is a JSON array
``[{"name": ..., "arguments": {...}}, ...]``. ``tool_choice`` picks the grammar: ``"required"``
and a named function admit only calls, ``"auto"`` a call or a plain answer (one that does not
start with ``[``), ``"none"`` no call at all. The grammar guarantees the shape of a call; a small
model still chooses its calls and arguments poorly.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .errors import APIError
from .schemas import ChatCompletionRequest, ChatMessage

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ToolPlan:
    """What a request's ``tools``, ``tool_choice`` and ``parallel_tool_calls`` ask for."""

    mode: str  # "none", "auto" or "required" (a named function is "required" of one tool)
    functions: tuple[dict[str, Any], ...] = ()
    parallel: bool = True

    @property
    def calls_possible(self) -> bool:
        return self.mode != "none"

    def system_text(self) -> str:
        """The system message that describes the functions and the call format."""
        listed = "\n".join(json.dumps(f, sort_keys=True) for f in self.functions)
        how = (
            "To call functions, answer with only a JSON array of calls, "
            '[{"name": "<function name>", "arguments": {<arguments>}}]'
        )
        if self.mode == "auto":
            how += ", or answer the user in plain text without calling any."
        else:
            how += "."
        return f"You can call these functions:\n{listed}\n{how}"

    def grammar(self) -> Any:
        """The llama.cpp grammar of this plan's answers (``None`` for mode ``none``)."""
        if self.mode == "none":
            return None
        schema = json.dumps(self._calls_schema(), sort_keys=False)
        try:
            return _grammar(schema, self.mode == "auto")
        except Exception as exc:  # llama.cpp's converter rejects what it cannot express
            raise APIError(400, f"unsupported JSON schema in tools: {exc}", param="tools") from None

    def _calls_schema(self) -> dict[str, Any]:
        calls = [
            {
                "type": "object",
                "properties": {
                    "name": {"const": f["name"]},
                    "arguments": f.get("parameters") or {"type": "object"},
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for f in self.functions
        ]
        item = calls[0] if len(calls) == 1 else {"anyOf": calls}
        schema: dict[str, Any] = {"type": "array", "items": item, "minItems": 1}
        if not self.parallel:
            schema["maxItems"] = 1
        return schema

    def parse(self, text: str) -> list[dict[str, Any]] | None:
        """The tool calls in a generated answer, ``None`` for a plain answer (or one cut short)."""
        if not self.calls_possible or not text.startswith("["):
            return None
        try:
            raw = json.loads(text)
        except ValueError:
            return None  # cut short by max_tokens: the text is returned as it is
        if not isinstance(raw, list) or not raw:
            return None
        calls = []
        for entry in raw:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                return None
            calls.append(
                {
                    "id": f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {
                        "name": entry["name"],
                        "arguments": json.dumps(entry.get("arguments", {})),
                    },
                }
            )
        return calls


@lru_cache(maxsize=64)
def _grammar(schema_json: str, or_answer: bool) -> Any:
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(schema_json)
    if or_answer:
        # the converter's root becomes one alternative; a plain answer must not open with "["
        gbnf = re.sub(r"(?m)^root\s*::=", "tool-calls ::=", gbnf)
        gbnf += "\nroot ::= tool-calls | plain-answer\nplain-answer ::= [^\\x5B] [^\\x00]*\n"
    return LlamaGrammar.from_string(gbnf, verbose=False)


def plan_for(body: ChatCompletionRequest) -> ToolPlan:
    """Validate the request's tool fields, as OpenAI does, and say what they ask for."""
    return make_plan(body.tools, body.tool_choice, body.parallel_tool_calls)


def make_plan(
    tools: list[dict[str, Any]] | None,
    choice: Any,
    parallel_calls: bool | None,
    *,
    flat: bool = False,
) -> ToolPlan:
    """The plan of ``tools``, ``tool_choice`` and ``parallel_tool_calls``.

    ``flat``: the Responses API's shapes, ``{"type": "function", "name": ...}`` for a tool and
    for a named choice; otherwise Chat Completions', with the function under ``"function"``.
    """
    if not tools:
        if choice is not None and choice != "none":
            raise APIError(
                400,
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
                param="tool_choice",
            )
        return ToolPlan("none")
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise APIError(400, "tools must be a list of tool objects.", param="tools")
    functions = tuple(_function(i, tool, flat) for i, tool in enumerate(tools))
    names = [f["name"] for f in functions]
    if len(set(names)) != len(names):
        raise APIError(400, "Function names in tools must be unique.", param="tools")
    parallel = parallel_calls is not False
    if choice is None or choice in ("auto", "required", "none"):
        return ToolPlan(choice or "auto", functions, parallel)
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice if flat else choice.get("function")
        wanted = function.get("name") if isinstance(function, dict) else None
        chosen = tuple(f for f in functions if f["name"] == wanted)
        if not chosen:
            raise APIError(
                400,
                f"Invalid value for 'tool_choice': no function named {wanted!r} in tools.",
                param="tool_choice",
            )
        return ToolPlan("required", chosen, parallel)
    named = (
        '{"type": "function", "name": ...}'
        if flat
        else ('{"type": "function", "function": {"name": ...}}')
    )
    raise APIError(
        400,
        f"Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or {named}.",
        param="tool_choice",
    )


def _function(index: int, tool: dict[str, Any], flat: bool) -> dict[str, Any]:
    function = tool if flat else tool.get("function")
    where = f"tools[{index}]" if flat else f"tools[{index}].function"
    if tool.get("type") != "function" or not isinstance(function, dict):
        raise APIError(
            400, f"tools[{index}]: only tools of type 'function' are supported.", param="tools"
        )
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise APIError(
            400,
            f"{where}.name must be 1 to 64 letters, digits, '_' or '-'.",
            param="tools",
        )
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise APIError(400, f"{where}.parameters must be a JSON Schema object.", param="tools")
    described: dict[str, Any] = {"name": name}
    if isinstance(function.get("description"), str):
        described["description"] = function["description"]
    if parameters:
        described["parameters"] = parameters
    return described


def template_messages(chat: list[ChatMessage], plan: ToolPlan) -> list[dict[str, Any]]:
    """The messages as the chat template takes them: tool calls and results written as text,
    and the functions described in a system message when a call is possible."""
    messages = [_message(i, m) for i, m in enumerate(chat)]
    if plan.calls_possible:
        if messages[0]["role"] == "system":
            messages[0] = {
                "role": "system",
                "content": f"{messages[0]['content']}\n\n{plan.system_text()}",
            }
        else:
            messages.insert(0, {"role": "system", "content": plan.system_text()})
    return messages


def _message(index: int, message: ChatMessage) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role
    content = message.text()
    if message.role == "tool" and not message.tool_call_id:
        raise APIError(
            400,
            f"messages[{index}]: a message with role 'tool' must have a 'tool_call_id'.",
            param=f"messages.[{index}].tool_call_id",
        )
    if message.role == "assistant" and message.tool_calls:
        calls = []
        for call in message.tool_calls:
            try:
                arguments: Any = json.loads(call.function.arguments)
            except ValueError:
                arguments = call.function.arguments
            calls.append({"name": call.function.name, "arguments": arguments})
        written = json.dumps(calls)
        content = f"{content}\n{written}" if content else written
    return {"role": role, "content": content}
