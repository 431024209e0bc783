"""The Idempotency-Key header, the request fingerprint and the store key of a record."""

from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring
from typing import Any, Final

from .._asgi import get_header, media_type
from ..context import Scope, json_body

__all__ = [
    "MAX_KEY_LENGTH",
    "Hasher",
    "InvalidKeyError",
    "asks_for_stream",
    "canonical_json",
    "is_json",
    "parse_key",
    "request_head",
    "wants_stream",
]

MAX_KEY_LENGTH: Final = 255
# visible ASCII but " and \ (deleting them with bytes.translate leaves nothing of a good key)
_TOKEN: Final = bytes(c for c in range(0x21, 0x7F) if c not in b'"\\')


class InvalidKeyError(ValueError):
    """The header is present but not a usable key; the message is safe to show the client."""


def parse_key(raw: bytes) -> str:
    """Parse one ``Idempotency-Key`` field value.

    The draft defines it as a Structured Field String (``"8e03978e-..."``); SDKs also send the
    bare token form, so both are accepted. The key is at most 255 characters of visible ASCII
    (a quoted String may also hold spaces, as RFC 8941 allows).

    >>> parse_key(b'"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    '8e03978e-40d5-43e8-bc93-6894a57f9324'
    >>> parse_key(b"abc")
    'abc'
    """
    value = raw.strip(b" \t")
    if value[:1] == b'"':
        key = _parse_sf_string(value)
    else:
        if not value:
            raise InvalidKeyError("the Idempotency-Key header is empty")
        if value.translate(None, _TOKEN):
            raise InvalidKeyError("the Idempotency-Key must be visible ASCII characters")
        key = value.decode("ascii")
    if not key:
        raise InvalidKeyError("the Idempotency-Key header is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"the Idempotency-Key must be at most {MAX_KEY_LENGTH} characters")
    return key


def _parse_sf_string(value: bytes) -> str:
    # RFC 8941 section 4.2.5: DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE
    out = bytearray()
    index = 1
    end = len(value)
    while index < end:
        char = value[index]
        if char == 0x5C:  # backslash
            index += 1
            if index >= end or value[index] not in (0x22, 0x5C):
                raise InvalidKeyError("the Idempotency-Key has an invalid escape")
            out.append(value[index])
        elif char == 0x22:  # closing quote
            if index != end - 1:
                raise InvalidKeyError("the Idempotency-Key has characters after its closing quote")
            return out.decode("ascii")
        elif 0x20 <= char <= 0x7E:
            out.append(char)
        else:
            raise InvalidKeyError("the Idempotency-Key must be visible ASCII characters")
        index += 1
    raise InvalidKeyError("the Idempotency-Key has no closing quote")


# One canonical encoder for every request, called directly: ``JSONEncoder.encode`` adds two
# Python frames and builds a new C encoder on every call. It has no circular-reference markers:
# a parsed JSON body cannot refer to itself.
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_C_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)  # CPython's accelerator
_ENCODE: Final = (
    None
    if _C_MAKE_ENCODER is None
    else _C_MAKE_ENCODER(None, None, encode_basestring, None, ":", ",", True, False, True)
)
# below this many bytes a body is hashed in one call with its head: the copy is cheaper
_JOIN_BELOW: Final = 16 * 1024
_BLOCK: Final = 64  # SHA-256's block size, for HMAC's padded keys


def canonical_json(parsed: object) -> bytes:
    """A parsed JSON value encoded canonically: keys sorted, no insignificant whitespace.

    >>> canonical_json({"b": [1, 2], "a": {"d": None, "c": 1.5}})
    b'{"a":{"c":1.5,"d":null},"b":[1,2]}'
    """
    # "surrogatepass": JSON may escape a lone surrogate ("\\ud800"), which UTF-8 cannot encode
    # strictly; passed through, the same body still has the same canonical form
    if _ENCODE is None:  # pragma: no cover (CPython builds have the accelerator)
        return _CANONICAL.encode(parsed).encode("utf-8", "surrogatepass")
    return "".join(_ENCODE(parsed, 0)).encode("utf-8", "surrogatepass")


def is_json(content_type: bytes | None) -> bool:
    kind = media_type(content_type)
    return kind == "application/json" or kind.endswith("+json")


def asks_for_stream(scope: Scope, body: bytes) -> bool:
    """Whether the request asks for an event stream: ``"stream": true`` in a JSON body (the
    OpenAI APIs) or ``Accept: text/event-stream``.

    >>> asks_for_stream({"headers": [(b"accept", b"text/event-stream")]}, b"")
    True
    """
    headers = scope.get("headers", ())
    json_type = is_json(get_header(headers, b"content-type"))
    return wants_stream(scope, body, json_type, get_header(headers, b"accept"))


def wants_stream(scope: Scope, body: bytes, json_type: bool, accept: bytes | None) -> bool:
    """:func:`asks_for_stream` for a caller that has read the request's headers already."""
    # a byte search first: most bodies have no "stream" member and need no parse here
    if json_type and b'"stream"' in body:
        parsed = json_body(scope)  # parsed once per request, shared with the fingerprint
        if isinstance(parsed, dict) and parsed.get("stream") is True:
            return True
    return accept is not None and b"text/event-stream" in accept.lower()


class Hasher:
    """Keyed (HMAC-SHA256) or plain SHA-256 digests for store keys and fingerprints.

    With a secret, neither the store keys nor the fingerprints can be recomputed by someone who
    reads the store, so a guessable key or a small request body does not leak through them.
    The HMAC's padded keys are hashed once, here: each digest then copies two SHA-256 states
    instead of setting up an HMAC (the digests are HMAC-SHA256's, RFC 2104).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes | None) -> None:
        self._inner: Any = None
        self._outer: Any = None
        if secret:
            key = hashlib.sha256(secret).digest() if len(secret) > _BLOCK else secret
            key = key.ljust(_BLOCK, b"\0")
            self._inner = hashlib.sha256(key.translate(_IPAD))
            self._outer = hashlib.sha256(key.translate(_OPAD))

    def _hash(self, data: bytes, body: bytes = b"") -> str:
        inner = self._inner
        if inner is None:
            if len(body) < _JOIN_BELOW:
                return hashlib.sha256(data + body).hexdigest()[:32]
            hasher = hashlib.sha256(data)
            hasher.update(body)
            return hasher.hexdigest()[:32]
        inner = inner.copy()
        inner.update(data)
        if body:
            inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:32]  # type: ignore[no-any-return]

    def record_key(self, tenant: str, key: str) -> str:
        """The store key of the record of ``key`` sent by ``tenant`` (never the raw key)."""
        raw = tenant.encode("utf-8")
        # the tenant is length-prefixed: ("ab", "c") and ("a", "bc") never collide
        return "idem:" + self._hash(b"%d:%s%s" % (len(raw), raw, key.encode("ascii")))

    def fingerprint(self, scope: Scope, body: bytes) -> str:
        """Hash of method, path, query and the body bytes as sent.

        Most retries resend the same bytes, so this cheap hash decides most comparisons;
        :meth:`canonical_fingerprint` settles the rest.
        """
        return self._hash(request_head(scope), body)

    def canonical_fingerprint(self, scope: Scope, body: bytes) -> str:
        """Like :meth:`fingerprint`, with a JSON body canonicalised first.

        Key order and insignificant whitespace of a JSON body do not change it. Equal to
        :meth:`fingerprint` for a body that is not JSON.
        """
        json_type = is_json(get_header(scope.get("headers", ()), b"content-type"))
        return self.canonical(scope, request_head(scope), body, json_type)

    def digest(self, head: bytes, body: bytes) -> str:
        """:meth:`fingerprint` of a request whose :func:`request_head` is known."""
        return self._hash(head, body)

    def canonical(
        self, scope: Scope, head: bytes, body: bytes, json_type: bool, fingerprint: str = ""
    ) -> str:
        """:meth:`canonical_fingerprint` of a request whose head, content type (``json_type``:
        a JSON media type) and :meth:`fingerprint` (if computed) are known: a body sent in
        canonical form already has its fingerprint as its canonical one."""
        if json_type and body:
            parsed = json_body(scope)
            if parsed is not None:
                canonical = canonical_json(parsed)
                if canonical != body:
                    return self._hash(head, canonical)
        return fingerprint or self._hash(head, body)


def request_head(scope: Scope) -> bytes:
    """What a fingerprint covers besides the body: method, raw path and query."""
    # unambiguous without length prefixes: a method has no space, a raw path no "?" (it
    # would start the query) and the query no newline (it comes from the request line)
    path = scope.get("raw_path") or scope.get("path", "").encode("utf-8").replace(b"?", b"%3F")
    return b"%s %s?%s\n" % (scope["method"].encode("ascii"), path, scope.get("query_string", b""))


_IPAD: Final = bytes(b ^ 0x36 for b in range(256))
_OPAD: Final = bytes(b ^ 0x5C for b in range(256))
