"""The stored record format: every header survives the round trip, whatever its bytes."""

from __future__ import annotations

import json

import pytest

from aimiddleware.idempotency import _records as records

HEADERS = [
    [(b"content-type", b"application/json"), (b"content-length", b"12")],
    [(b"x-quote", b'say "hi"'), (b"x-backslash", b"a\\b")],
    [(b"x-latin", b"caf\xe9"), (b"x-tab", b"a\tb"), (b"x-del", b"\x7f")],
    [],
]


@pytest.mark.parametrize("headers", HEADERS)
@pytest.mark.parametrize("chunks", [None, 0, 7])
def test_a_completed_record_decodes_to_what_was_stored(
    headers: list[tuple[bytes, bytes]], chunks: int | None
) -> None:
    body = b'{"a": 1}\n\xff'
    value = records.completed("a" * 32, "b" * 32, "c" * 32, 201, headers, body=body, chunks=chunks)
    record = records.decode(value)
    assert (record.status, record.headers, record.chunks) == (201, headers, chunks)
    assert record.body == body
    assert (record.token, record.fingerprint, record.canonical) == ("a" * 32, "b" * 32, "c" * 32)


@pytest.mark.parametrize("headers", HEADERS)
def test_the_head_of_a_record_is_json_without_a_raw_newline(
    headers: list[tuple[bytes, bytes]],
) -> None:
    value = records.streaming_lease("a" * 32, "b" * 32, 200, headers)
    meta = value[65:]
    assert b"\n" not in meta
    assert json.loads(meta)["h"] == [[n.decode("latin-1"), v.decode("latin-1")] for n, v in headers]
