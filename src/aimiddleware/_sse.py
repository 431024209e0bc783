"""Incremental parsing of ``text/event-stream`` bodies, for middlewares that watch a stream.

The parser never holds more than one incomplete event: it is fed each ``http.response.body``
chunk as it passes and returns the events that chunk completed, raw bytes included, so a
middleware can forward, drop or record whole events without buffering the stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["EVENT_TERMINATORS", "SSEEvent", "SSEParser", "ends_event", "last_event_end"]

#: How an event ends: a line end followed by an empty line. Each ending is listed by the bytes it
#: ends with (``\r\n\r\n`` ends with ``\n\r\n``, ``\r\n\n`` with ``\n\n``), so
#: ``endswith`` and ``rfind`` on these three find every complete event of the three line-end
#: conventions of the format, mixed or not.
EVENT_TERMINATORS: Final = (b"\n\n", b"\r\r", b"\n\r\n")


def ends_event(body: bytes) -> bool:
    """Whether ``body`` ends where an event ends (a heartbeat or an error may follow it).

    >>> ends_event(b"data: 1\\r\\n\\r\\n"), ends_event(b"data: 1\\n")
    (True, False)
    """
    return body.endswith(EVENT_TERMINATORS)


def last_event_end(body: bytes) -> int:
    """The end of the last complete event in ``body`` (-1 if none).

    >>> last_event_end(b"data: 1\\n\\ndata: 2")
    9
    """
    best = -1
    for terminator in EVENT_TERMINATORS:
        at = body.rfind(terminator)
        if at >= 0:
            best = max(best, at + len(terminator))
    return best


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One event: ``raw`` is exactly what went over the wire, terminator included."""

    raw: bytes
    data: str | None  # the data lines joined with "\n"; None for comment-only events
    event: str | None = None
    id: str | None = None

    @property
    def is_comment(self) -> bool:
        return self.data is None and self.event is None and self.id is None


class SSEParser:
    """Feed body chunks, get completed events.

    >>> parser = SSEParser()
    >>> parser.feed(b'data: {"a": 1}\\n\\ndata: par')[0].data
    '{"a": 1}'
    >>> parser.feed(b"tial\\n\\n")[0].data
    'partial'
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    @property
    def pending(self) -> bytes:
        """Bytes of an event that has not been completed yet."""
        return self._pending

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._pending + chunk if self._pending else chunk
        if b"\r" not in buffer:
            # the usual stream, "\n" line ends only: every event ends at "\n\n", and one split
            # in C finds them all (this runs for every chunk of every watched stream)
            pieces = buffer.split(b"\n\n")
            self._pending = pending = pieces.pop()
            if len(pieces) == 1 and not pending:
                return [_parse(buffer, pieces[0])]  # one whole event: the common chunk
            return [_parse(piece + b"\n\n", piece) for piece in pieces]
        events: list[SSEEvent] = []
        start = 0
        while True:
            end, size = _boundary(buffer, start)
            if end < 0:
                break
            events.append(_parse(buffer[start : end + size], buffer[start:end]))
            start = end + size
        self._pending = buffer[start:]
        return events


def _boundary(buffer: bytes, start: int) -> tuple[int, int]:
    """Position and length of the first blank-line terminator at or after ``start``."""
    best, size = -1, 0
    for terminator in EVENT_TERMINATORS:
        at = buffer.find(terminator, start)
        if at >= 0 and (best < 0 or at < best):
            best, size = at, len(terminator)
    return best, size


def _parse(raw: bytes, body: bytes) -> SSEEvent:
    lines = body.decode("utf-8", "replace").splitlines()
    if len(lines) == 1 and lines[0].startswith("data:"):
        value = lines[0][5:]  # one data line: an LLM stream's every chunk
        return SSEEvent(raw, value[1:] if value.startswith(" ") else value)
    data: list[str] = []
    event = event_id = None
    for line in lines:
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id":
            event_id = value
    return SSEEvent(raw, "\n".join(data) if data else None, event, event_id)
