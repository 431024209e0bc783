"""What the middleware keeps in the store under a record key, as compact bytes.

Three shapes share one key; the first byte says which::

    L <token> <fingerprint> [<clock>]                       a lease: the request is running
    S <token> <fingerprint> <meta>                          a lease on a stream that started
    C <token> <fingerprint> <canonical> <meta> "\\n" <body>  the completed response

``fingerprint`` hashes the request as sent, ``canonical`` the same with a JSON body
canonicalised (computed once the response is complete, off the latency path).
``token`` (32 hex) is unique per execution: a lease is only renewed, completed or released by
the execution that holds it (compare-and-set on the whole value). ``meta`` is JSON without a
raw newline: status, headers, the route template the response came from (for whoever reports
a replay's route), and for a stream the number of chunks in the chunk log
``<record key>:<token>``. A non-streamed body follows the newline as raw bytes, so a replay is
byte-identical without any decoding.

A running request's lease also says how far along it is, for the ``Retry-After`` of a retry
that finds it (:mod:`._estimate`): ``clock`` is ``{"t":<ms>}``, when the request started, and a
streaming lease's ``meta`` adds ``"t"``, ``"f"`` (when its first chunk went out) and, once the
stream has run a while, ``"c"`` and ``"a"``: ``c`` chunks were in the log at ``a``. Times are
wall-clock milliseconds since the epoch (another worker reads them). Leases written before
these fields existed (no clock, a ``meta`` without them) still decode: their fields are
``None``, and a retry that finds one is told the configured ``retry_after``. A reader that
predates them ignores them (a lease's tail, unknown JSON members).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

__all__ = [
    "Record",
    "completed",
    "decode",
    "lease",
    "log_key",
    "progressed",
    "streaming_lease",
]

LEASE: Final = 0x4C  # "L"
STREAMING: Final = 0x53  # "S"
COMPLETED: Final = 0x43  # "C"
_HEAD: Final = 65  # kind + token + fingerprint
_COMPLETED_HEAD: Final = _HEAD + 32  # + canonical fingerprint

# built once: json.dumps with options builds a new encoder per call
_META: Final = json.JSONEncoder(separators=(",", ":"))

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Record:
    """One decoded record value."""

    kind: int
    token: str
    fingerprint: str
    status: int = 0
    headers: Headers | None = None
    chunks: int | None = None
    body: bytes = b""
    canonical: str = ""
    route: str | None = None
    # how far a running request is (seconds since the epoch; None in a lease that predates them)
    started: float | None = None
    first: float | None = None  # a stream's first chunk
    written: int | None = None  # chunks in the log at ``written_at``
    written_at: float | None = None

    @property
    def complete(self) -> bool:
        return self.kind == COMPLETED

    @property
    def streaming(self) -> bool:
        return self.kind == STREAMING or (self.kind == COMPLETED and self.chunks is not None)


def log_key(record_key: str, token: str) -> str:
    """The chunk log of one execution: a crashed attempt's chunks never mix with a retry's."""
    return f"{record_key}:{token}"


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def lease(token: str, fingerprint: str, started: float | None = None) -> bytes:
    """The lease a request claims its key with; ``started``: when it started (``time.time()``)."""
    if started is None:
        return b"L" + token.encode("ascii") + fingerprint.encode("ascii")
    # one f-string: this runs for every claimed request
    return f'L{token}{fingerprint}{{"t":{int(started * 1000)}}}'.encode("ascii")


# bytes a JSON string may hold as they are: printable ASCII but '"' and '\\' (deleting them
# with bytes.translate tests a header block in a fraction of a regular expression's search)
_PLAIN: Final = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')


def _meta(status: int, headers: Headers, chunks: int | None, route: str | None) -> bytes:
    # Header names and values are almost always plain ASCII: written directly, they cost a
    # fraction of the JSON encoder's work. Anything else goes through the encoder (the
    # output is the same JSON either way).
    raw_route = route.encode("latin-1", "replace") if route is not None else b""
    if not (b"".join(map(b"".join, headers)) + raw_route).translate(None, _PLAIN):
        # [["n1","v1"],["n2","v2"]] by joins alone (a comprehension is a frame of its own)
        pairs = b'["%s"]' % b'"],["'.join(map(b'","'.join, headers)) if headers else b""
        tail = b"" if chunks is None else b',"n":%d' % chunks
        if route is not None:
            tail += b',"r":"%s"' % raw_route
        return b'{"s":%d,"h":[%s]%s}' % (status, pairs, tail)
    data: dict[str, object] = {
        "s": status,
        "h": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers],
    }
    if chunks is not None:
        data["n"] = chunks
    if route is not None:
        data["r"] = route
    return _META.encode(data).encode("ascii")


def streaming_lease(
    token: str,
    fingerprint: str,
    status: int,
    headers: Headers,
    route: str | None = None,
    *,
    started: float | None = None,
    first: float | None = None,
) -> bytes:
    """The lease of a stream that started: its head, and when the request and its first chunk
    started (both or neither)."""
    head = b"S" + token.encode("ascii") + fingerprint.encode("ascii")
    meta = _meta(status, headers, None, route)
    if started is None or first is None:
        return head + meta
    return head + meta[:-1] + b',"t":%d,"f":%d}' % (_ms(started), _ms(first))


def progressed(value: bytes, written: int, at: float) -> bytes:
    """``value`` (a :func:`streaming_lease` without progress) saying that ``written`` chunks were
    in the log at ``at``."""
    return value[:-1] + b',"c":%d,"a":%d}' % (written, _ms(at))


def _seconds(data: dict[str, object], name: str) -> float | None:
    value = data.get(name)
    # a number we wrote, never a bool (JSON true is not a time)
    return value / 1000 if isinstance(value, int) and not isinstance(value, bool) else None


def completed(
    token: str,
    fingerprint: str,
    canonical: str,
    status: int,
    headers: Headers,
    body: bytes = b"",
    chunks: int | None = None,
    route: str | None = None,
) -> bytes:
    head = f"C{token}{fingerprint}{canonical}".encode("ascii")
    return b"".join((head, _meta(status, headers, chunks, route), b"\n", body))


def decode(value: bytes) -> Record:
    """Decode a record value.

    :raises ValueError: the value is not one of ours (a foreign writer or a corrupted store).
    """
    if len(value) < _HEAD or value[0] not in (LEASE, STREAMING, COMPLETED):
        raise ValueError("not an idempotency record")
    kind = value[0]
    token = value[1:33].decode("ascii")
    fingerprint = value[33:_HEAD].decode("ascii")
    if kind == LEASE:
        if len(value) == _HEAD:  # a lease without its clock (written before it had one)
            return Record(kind, token, fingerprint)
        try:
            clock = json.loads(value[_HEAD:])
        except ValueError:  # a tail a later version wrote: the lease itself is sound
            clock = None
        started = _seconds(clock, "t") if isinstance(clock, dict) else None
        return Record(kind, token, fingerprint, started=started)
    canonical = ""
    if kind == STREAMING:
        meta, body = value[_HEAD:], b""
    else:
        canonical = value[_HEAD:_COMPLETED_HEAD].decode("ascii")
        newline = value.find(b"\n", _COMPLETED_HEAD)
        if newline < 0:
            raise ValueError("a completed record without its body separator")
        meta, body = value[_COMPLETED_HEAD:newline], value[newline + 1 :]
    data = json.loads(meta)
    headers = [(name.encode("latin-1"), val.encode("latin-1")) for name, val in data["h"]]
    route = data.get("r")
    record = Record(
        kind, token, fingerprint, int(data["s"]), headers, data.get("n"), body, canonical, route
    )
    if kind == STREAMING and "t" in data:
        record.started = _seconds(data, "t")
        record.first = _seconds(data, "f")
        written = data.get("c")
        if isinstance(written, int) and not isinstance(written, bool):
            record.written, record.written_at = written, _seconds(data, "a")
    return record
