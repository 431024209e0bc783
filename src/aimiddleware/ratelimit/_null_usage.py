"""Take the ``"usage": null`` field the middleware caused out of a stream's chunk, byte-exact.

A server asked for ``stream_options.include_usage`` writes ``"usage": null`` on every chunk but
the last (as OpenAI does). When the middleware asked on the client's behalf, the client gets each
chunk as the server would have written it unasked: the field is cut out of the event's bytes,
with its separating comma, and every other byte is left as it was.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["drop_null_usage", "has_null_usage"]

_NULL_USAGE: Final = re.compile(rb'"usage"\s*:\s*null')
_SPACE: Final = b" \t\r\n"


def has_null_usage(payload: Any) -> bool:
    """Whether a parsed chunk has a top-level ``usage`` whose value is null."""
    return isinstance(payload, dict) and "usage" in payload and payload["usage"] is None


def _string_end(raw: bytes, start: int) -> int:
    """The index after the JSON string that opens at ``start`` (``len(raw)`` if unterminated)."""
    at = start + 1
    while True:
        quote = raw.find(b'"', at)
        if quote < 0:
            return len(raw)
        backslashes = 0
        while raw[quote - 1 - backslashes] == 0x5C:  # "\"
            backslashes += 1
        if backslashes % 2 == 0:
            return quote + 1
        at = quote + 1


def drop_null_usage(raw: bytes) -> bytes:
    """``raw`` (one SSE event) without its JSON object's top-level ``"usage": null`` member;
    ``raw`` itself when it has none."""
    at = raw.find(b"{")
    if at < 0:
        return raw
    depth = 0
    while at < len(raw):
        byte = raw[at]
        if byte == 0x22:  # a string: a key or a value, skipped whole
            if depth == 1:
                found = _NULL_USAGE.match(raw, at)
                if found is not None:  # a value string is never followed by ":"
                    return _cut(raw, at, found.end())
            at = _string_end(raw, at)
            continue
        if byte in b"{[":
            depth += 1
        elif byte in b"}]":
            depth -= 1
            if depth == 0:
                break
        at += 1
    return raw


def _cut(raw: bytes, start: int, end: int) -> bytes:
    before = start
    while before > 0 and raw[before - 1] in _SPACE:
        before -= 1
    if before > 0 and raw[before - 1] == 0x2C:  # a member before it: drop ", usage: null"
        return raw[: before - 1] + raw[end:]
    after = end
    while after < len(raw) and raw[after] in _SPACE:
        after += 1
    if after < len(raw) and raw[after] == 0x2C:  # the first member: drop "usage: null, "
        after += 1
        while after < len(raw) and raw[after] in _SPACE:
            after += 1
    return raw[:start] + raw[after:]
