"""The hot path's JSON parsing answers as json.loads does, value for value and error for error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aimiddleware._json import loads, parse_json

BODIES = [
    b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}',
    b' {"a": 1}',  # leading whitespace: the full decoder
    b'{"a": 1}\r\n\t ',  # trailing whitespace is allowed
    b'{"a": 1} x',  # extra data
    b'{"a": 1}{"b": 2}',
    b"",
    b"   ",
    b"nul",
    b"[1, 2",
    b'"\\ud800"',  # a lone surrogate escape is valid JSON
    "\ufeff[1]".encode(),  # a UTF-8 byte order mark
    "[2]".encode("utf-16"),
    "[3]".encode("utf-32"),
    b"\xff\xfe\xfd",  # not text in any encoding json accepts
    '{"名": "値"}'.encode(),
    b"NaN",
    b"1e400",
    b"[" * 100_000 + b"]" * 100_000,  # deeper than the interpreter's recursion limit
]


def outcome(parse: Any, body: Any) -> tuple[str, Any]:
    try:
        return "value", parse(body)
    except RecursionError:
        return "error", "RecursionError"
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return "error", "ValueError"


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_loads_answers_as_json_loads(body: bytes) -> None:
    mine, theirs = outcome(loads, body), outcome(json.loads, body)
    if mine[0] == "value" and mine[1] != mine[1]:  # NaN equals nothing, itself included
        assert repr(mine) == repr(theirs)
    else:
        assert mine == theirs


def _utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


TEXTS = [body.decode() for body in BODIES if _utf8(body)]


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_parse_json_answers_as_json_loads_on_text(text: str) -> None:
    mine, theirs = outcome(parse_json, text), outcome(json.loads, text)
    assert repr(mine) == repr(theirs)
