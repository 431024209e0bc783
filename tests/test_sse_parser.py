from __future__ import annotations

from aimiddleware._sse import SSEParser, ends_event, last_event_end


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


def test_every_line_end_convention_ends_an_event() -> None:
    # LF, CR, CRLF, and an LF line followed by a CRLF blank line: all four end an event
    chunk = b"data: a\n\ndata: b\r\rdata: c\r\n\r\ndata: d\n\r\n"
    events = SSEParser().feed(chunk)
    assert [e.data for e in events] == ["a", "b", "c", "d"]
    assert b"".join(e.raw for e in events) == chunk


def test_ends_event_and_last_event_end_agree_with_the_parser() -> None:
    for body in (b"data: a\n\n", b"data: a\r\r", b"data: a\r\n\r\n", b"data: a\n\r\n"):
        assert ends_event(body)
        assert last_event_end(body + b"data: b") == len(body)
        (event,) = SSEParser().feed(body)
        assert event.raw == body
    assert not ends_event(b"data: a\r\n")
    assert last_event_end(b"data: a\r\n") == -1
