from __future__ import annotations

from aimiddleware._sse import SSEParser


def test_events_split_across_chunks_are_completed_later() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: hel") == []
    assert parser.pending == b"data: hel"
    (event,) = parser.feed(b"lo\n\n")
    assert event.data == "hello"
    assert event.raw == b"data: hello\n\n"
    assert parser.pending == b""


def test_several_events_in_one_chunk_keep_their_raw_bytes() -> None:
    chunk = b'id: 1\nevent: delta\ndata: {"a":1}\n\n: keep-alive\n\ndata: a\ndata: b\r\n\r\n'
    events = SSEParser().feed(chunk)
    assert [e.data for e in events] == ['{"a":1}', None, "a\nb"]
    assert (events[0].id, events[0].event) == ("1", "delta")
    assert events[1].is_comment
    assert b"".join(e.raw for e in events) == chunk


def test_terminator_split_between_chunks() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\n") == []
    (event,) = parser.feed(b"\ndata: y")
    assert event.data == "x"
    assert parser.pending == b"data: y"
