"""JSON parsing on the hot path: the C scanner under ``json.loads``, without its Python layers.

On a small body ``json.loads``' own steps (encoding detection, ``raw_decode``, two whitespace
searches) cost as much as the scan itself, and every middleware that reads a request or
response body pays them. These functions give ``json.loads``' results and errors; whatever the
fast path does not handle (leading whitespace, a byte order mark, UTF-16) goes to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.scanner import make_scanner
from typing import Any, Final

_DECODER: Final = json.JSONDecoder()
_decode: Final = _DECODER.decode
# typeshed types the scanner class, where the standard library's function takes the decoder
_scan: Final[Callable[[str, int], tuple[Any, int]]] = make_scanner(_DECODER)  # type: ignore[arg-type]
_JSON_SPACE: Final = " \t\n\r"


def parse_json(text: str) -> Any:
    """``json.loads(text)`` for a body that starts with its value, as servers write them.

    >>> parse_json('{"id": "c1"}\\n'), parse_json(' [1]')
    ({'id': 'c1'}, [1])
    """
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # leading whitespace, or no JSON value at all: the full decoder says
        return _decode(text)
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        raise ValueError("extra data after the JSON value")
    return value


def loads(body: bytes) -> Any:
    """``json.loads(body)``: UTF-8 (RFC 8259) read by the scanner, anything else by ``json``.

    >>> loads(b'{"model": "m"}'), loads('\\ufeff[1]'.encode("utf-8")), loads('[2]'.encode("utf-16"))
    ({'model': 'm'}, [1], [2])
    """
    try:
        text = body.decode()
        value, end = _scan(text, 0)
    except (UnicodeDecodeError, StopIteration):  # another encoding, a BOM, leading space
        return json.loads(body)
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        raise ValueError("extra data after the JSON value")
    return value
