"""The Idempotency-Key header, the request fingerprint and the store key of a record."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Final

from .._asgi import get_header, media_type
from ..context import Scope, json_body

__all__ = ["MAX_KEY_LENGTH", "Hasher", "InvalidKeyError", "asks_for_stream", "parse_key"]

MAX_KEY_LENGTH: Final = 255
_TOKEN: Final = re.compile(rb"[\x21\x23-\x5b\x5d-\x7e]+")  # visible ASCII but " and \


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
        if not _TOKEN.fullmatch(value):
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


# one encoder for every request: json.dumps with options builds a new one per call
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _is_json(content_type: bytes | None) -> bool:
    kind = media_type(content_type)
    return kind == "application/json" or kind.endswith("+json")


def asks_for_stream(scope: Scope, body: bytes) -> bool:
    """Whether the request asks for an event stream: ``"stream": true`` in a JSON body (the
    OpenAI APIs) or ``Accept: text/event-stream``.

    >>> asks_for_stream({"headers": [(b"accept", b"text/event-stream")]}, b"")
    True
    """
    headers = scope.get("headers", ())
    # a byte search first: most bodies have no "stream" member and need no parse here
    if b'"stream"' in body and _is_json(get_header(headers, b"content-type")):
        parsed = json_body(scope)  # parsed once per request, shared with the fingerprint
        if isinstance(parsed, dict) and parsed.get("stream") is True:
            return True
    accept = get_header(headers, b"accept")
    return accept is not None and b"text/event-stream" in accept.lower()


class Hasher:
    """Keyed (HMAC-SHA256) or plain SHA-256 digests for store keys and fingerprints.

    With a secret, neither the store keys nor the fingerprints can be recomputed by someone who
    reads the store, so a guessable key or a small request body does not leak through them.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes | None) -> None:
        self._secret = secret

    def _hash(self, head: bytes, body: bytes = b"") -> str:
        hasher = hmac.new(self._secret, head, "sha256") if self._secret else hashlib.sha256(head)
        if body:
            hasher.update(body)
        return hasher.hexdigest()[:32]

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
        return self._request_digest(scope, body)

    def canonical_fingerprint(self, scope: Scope, body: bytes) -> str:
        """Like :meth:`fingerprint`, with a JSON body canonicalised first.

        Key order and insignificant whitespace of a JSON body do not change it. Equal to
        :meth:`fingerprint` for a body that is not JSON.
        """
        if body and _is_json(get_header(scope.get("headers", ()), b"content-type")):
            parsed = json_body(scope)
            if parsed is not None:
                body = _CANONICAL.encode(parsed).encode("utf-8")
        return self._request_digest(scope, body)

    def _request_digest(self, scope: Scope, body: bytes) -> str:
        # unambiguous without length prefixes: a method has no space, a raw path no "?" (it
        # would start the query) and the query no newline (it comes from the request line)
        path = scope.get("raw_path") or scope.get("path", "").encode("utf-8").replace(b"?", b"%3F")
        head = b"%s %s?%s\n" % (
            scope["method"].encode("ascii"),
            path,
            scope.get("query_string", b""),
        )
        return self._hash(head, body)
