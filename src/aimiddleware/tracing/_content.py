"""Opt-in capture of message content, in the GenAI conventions' message shape.

Off by default: prompts and completions are the users' data. When switched on, the text parts
of the request's messages become ``gen_ai.input.messages`` and the generated text
``gen_ai.output.messages``, each a JSON string whose text is cut at a character limit.
"""

from __future__ import annotations

import json
from typing import Any, Final

from . import _semconv as sc

INPUT_MESSAGES: Final = sc.GEN_AI_INPUT_MESSAGES
OUTPUT_MESSAGES: Final = sc.GEN_AI_OUTPUT_MESSAGES


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, {"type": "image_url", ...}]
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        return "".join(texts) if texts else None
    return None


def _message(role: str, text: str | None, **extra: Any) -> dict[str, Any]:
    parts = [] if text is None else [{"type": "text", "content": text}]
    return {"role": role, "parts": parts, **extra}


def input_messages(operation: str, body: Any, limit: int) -> list[dict[str, Any]]:
    """The request's messages (chat), prompt (completions) or input (embeddings), their text
    cut so that all of it together stays within ``limit`` characters."""
    if not isinstance(body, dict):
        return []
    if operation == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list):
            return []
        pairs = [
            (str(m.get("role", "user")), _text(m.get("content")))
            for m in messages
            if isinstance(m, dict)
        ]
    else:
        value = body.get("prompt" if operation == "text_completion" else "input")
        texts = value if isinstance(value, list) else [value]
        pairs = [("user", t) for t in texts if isinstance(t, str)]
    out = []
    for role, text in pairs:
        if text is not None:
            text = text[: max(limit, 0)]
            limit -= len(text)
        out.append(_message(role, text))
    return out


class OutputCollector:
    """Accumulates generated text per choice from whole responses or stream chunks."""

    __slots__ = ("_finish", "_size", "_texts", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._texts: dict[int, list[str]] = {}
        self._finish: dict[int, str] = {}
        self._size = 0

    def observe(self, payload: Any) -> None:
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
            return
        for position, choice in enumerate(payload["choices"]):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", position)
            index = index if isinstance(index, int) else position
            source = choice.get("delta") or choice.get("message") or {}
            text = _text(source.get("content")) if isinstance(source, dict) else None
            if text is None and isinstance(choice.get("text"), str):  # completions
                text = choice["text"]
            if text and self._size < self.limit:
                text = text[: self.limit - self._size]
                self._texts.setdefault(index, []).append(text)
                self._size += len(text)
            if isinstance(choice.get("finish_reason"), str):
                self._finish[index] = choice["finish_reason"]

    def messages(self) -> list[dict[str, Any]]:
        indexes = sorted(set(self._texts) | set(self._finish))
        return [
            _message(
                "assistant",
                "".join(self._texts.get(i, [])),
                **({"finish_reason": self._finish[i]} if i in self._finish else {}),
            )
            for i in indexes
        ]


def as_attribute(messages: list[dict[str, Any]]) -> str | None:
    """The messages as one JSON string (their text already cut to the limit)."""
    if not messages:
        return None
    return json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
