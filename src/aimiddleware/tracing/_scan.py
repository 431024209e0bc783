"""What an LLM response says about itself, read as it passes and never buffered.

Streams go through the shared :class:`~aimiddleware._sse.SSEParser` and
:class:`~aimiddleware._openai.LLMResponse`. Once the first chunk carrying choices has been seen,
a chunk of whole events that mentions none of what is still to learn (usage, a finish reason,
an error) is passed over without decoding: token deltas are most of a stream and
tell the span nothing new, and skipping them keeps the cost per chunk to a few byte searches.
"""

from __future__ import annotations

import re
from time import perf_counter
from typing import Final

from .._json import parse_json
from .._openai import LLMResponse
from .._sse import SSEParser, ends_event
from ._content import OutputCollector

# news in a chunk: an "error", "finish_reason" or "usage" key whose value is not null. One
# search instead of a find per key: on a token delta the calls cost more than the bytes they
# read. Possessive quantifiers, so that `": null"` cannot match by giving up its space.
_NEWS: Final = re.compile(rb'"(?:error|usage|finish_reason)"\s*+:\s*+(?!null)').search


def _uninformative(chunk: bytes) -> bool:
    """Whether whole events in ``chunk`` can only repeat what the first chunk said.

    Usage, a finish reason or an error would be news. Servers write ``"finish_reason": null``
    (and some ``"usage": null``) into every delta, so those keys alone are not; a null
    ``"error"`` is no error either. A false
    "informative" only costs a full parse; the byte patterns cannot miss real news because JSON
    string content escapes its quotes.

    >>> _uninformative(b'data: {"choices": [{"delta": {}, "finish_reason": null}]}\\n\\n')
    True
    >>> _uninformative(b'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}\\n\\n')
    False
    """
    return _NEWS(chunk) is None


class StreamScan:
    """Feed each body chunk of a ``text/event-stream`` response; read :attr:`response`.

    >>> scan = StreamScan(started=perf_counter())
    >>> scan.feed(b'data: {"id": "c1", "choices": [{"delta": {}}]}\\n\\n')
    >>> scan.response.id, scan.ttft is not None
    ('c1', True)
    """

    __slots__ = ("_collector", "_parser", "_started", "response", "ttft")

    def __init__(self, *, started: float, collector: OutputCollector | None = None) -> None:
        self._parser = SSEParser()
        self._started = started
        self._collector = collector  # content capture reads every chunk: no shortcut then
        self.response = LLMResponse()
        self.ttft: float | None = None  # seconds to the first event that carries choices

    def feed(self, chunk: bytes) -> None:
        if (
            self.ttft is not None
            and self._collector is None
            and not self._parser.pending
            and ends_event(chunk)
            and _uninformative(chunk)
        ):
            return
        response = self.response
        for event in self._parser.feed(chunk):
            if event.data is None:
                continue
            payload = response.observe_event_data(event.data)
            if self._collector is not None:
                self._collector.observe(payload)
            if self.ttft is None and response.chunks:
                self.ttft = perf_counter() - self._started


class BodyScan:
    """Collect a JSON response body up to ``limit`` bytes; read it once at the end."""

    __slots__ = ("_limit", "_parts", "_size")

    def __init__(self, *, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] | None = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        if self._parts is None:
            return
        self._size += len(chunk)
        if self._size > self._limit:
            self._parts = None  # too large to be worth reading: give up, keep nothing
        else:
            self._parts.append(chunk)

    def result(self, collector: OutputCollector | None = None) -> LLMResponse | None:
        if not self._parts:
            return None
        parts = self._parts
        try:
            # JSON on the wire is UTF-8 (RFC 8259): decoding first spares json.loads its
            # detection of the encoding
            payload = parse_json((parts[0] if len(parts) == 1 else b"".join(parts)).decode())
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        response = LLMResponse()
        response.observe(payload)
        if collector is not None:
            collector.observe(payload)
        return response
