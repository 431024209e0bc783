"""What the middleware keeps in the store under a record key, as compact bytes.

Three shapes share one key; the first byte says which::

    L <token> <fingerprint>                                 a lease: the request is running
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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

__all__ = ["Record", "completed", "decode", "lease", "log_key", "streaming_lease"]

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

    @property
    def complete(self) -> bool:
        return self.kind == COMPLETED

    @property
    def streaming(self) -> bool:
        return self.kind == STREAMING or (self.kind == COMPLETED and self.chunks is not None)


def log_key(record_key: str, token: str) -> str:
    """The chunk log of one execution: a crashed attempt's chunks never mix with a retry's."""
    return f"{record_key}:{token}"


def lease(token: str, fingerprint: str) -> bytes:
    return b"L" + token.encode("ascii") + fingerprint.encode("ascii")


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
    token: str, fingerprint: str, status: int, headers: Headers, route: str | None = None
) -> bytes:
    head = b"S" + token.encode("ascii") + fingerprint.encode("ascii")
    return head + _meta(status, headers, None, route)


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
        return Record(kind, token, fingerprint)
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
    return Record(
        kind, token, fingerprint, int(data["s"]), headers, data.get("n"), body, canonical, route
    )
