"""API keys for agents: stored as hashes, looked up by id, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from .._challenges import scope_tokens
from ..exceptions import ConfigurationError
from ..principal import Principal, namespaced_id

__all__ = ["APIKey", "APIKeys"]

_SEPARATOR: Final = "."
_NO_DIGEST: Final = bytes(32)


def hash_key(key: str) -> str:
    """The stored form of a key: ``sha256:<hex>``.

    A plain SHA-256 suffices for generated keys (256 random bits; nothing to brute-force), and
    costs a microsecond per request where a password hash would cost tens of milliseconds.
    """
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class APIKey:
    """One API key record: its public id, the hash of the key, and what it grants.

    The principal's id is ``key:<id>`` (what rate limits and idempotency records key on): API
    keys have a namespace of their own, so a key ``webapp`` is never the OAuth client ``webapp``;
    ``tier`` is its rate-limit tier. The key itself is never stored, only ``key_hash``.

    >>> APIKey(id="agent-7", key_hash="sha256:" + "0" * 64, scopes=("chat",), tier="agent").id
    'agent-7'
    """

    id: str
    key_hash: str = field(repr=False)
    scopes: Sequence[str] | str = ()
    tier: str | None = None
    subject: str | None = None
    _principal: Principal = field(init=False, repr=False, compare=False)
    _digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.id or any(c.isspace() for c in self.id):
            raise ConfigurationError(f"invalid API key id {self.id!r}")
        digest = self.key_hash.removeprefix("sha256:")
        if not self.key_hash.startswith("sha256:") or len(digest) != 64:
            raise ConfigurationError(f"the key_hash of API key {self.id!r} is not sha256:<hex>")
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            raise ConfigurationError(f"the key_hash of API key {self.id!r} is not hex") from None
        # what lookup compares, as bytes; a hash written in upper case never matched the
        # lower-case hex of hash_key, and still matches nothing
        object.__setattr__(self, "_digest", raw if digest == digest.lower() else b"")
        scopes = scope_tokens(f"the scopes of API key {self.id!r}", self.scopes)
        object.__setattr__(self, "scopes", scopes)
        # built once: the principal is immutable, and every request with this key needs it
        principal = Principal(
            id=namespaced_id("key", self.id),
            subject=self.subject,
            client_id=self.id,
            scopes=frozenset(scopes),
            tier=self.tier,
            credential="api_key",
        )
        object.__setattr__(self, "_principal", principal)

    def principal(self) -> Principal:
        """The caller this key stands for (its id, ``key:<id>``, is what limits and records
        key on)."""
        return self._principal


class APIKeys:
    """The API keys this server accepts as ``Authorization: Bearer <key>``.

    A key reads ``<prefix><id>.<secret>``: the id (public) selects the record, then the hash of
    the whole key is compared with ``hmac.compare_digest``, so timing reveals nothing about the
    secret. Tokens without ``prefix`` are not API keys (they go to JWT or introspection).

    >>> key, record = APIKeys.generate("agent-7", scopes=["chat"], tier="agent")
    >>> keys = APIKeys([record])
    >>> keys.lookup(key).tier
    'agent'
    """

    def __init__(self, keys: Iterable[APIKey], *, prefix: str = "sk-") -> None:
        if not prefix:
            raise ConfigurationError("API keys need a non-empty prefix to tell them from tokens")
        if prefix.startswith("ey"):
            raise ConfigurationError("an API key prefix starting with 'ey' is taken for JWTs")
        self.prefix = prefix
        self._by_id: dict[str, APIKey] = {}
        for record in keys:
            if not isinstance(record, APIKey):
                raise ConfigurationError(f"expected APIKey records, got {type(record).__name__}")
            if record.id in self._by_id:
                raise ConfigurationError(f"API key id {record.id!r} is listed twice")
            self._by_id[record.id] = record

    def __repr__(self) -> str:
        return f"APIKeys({len(self._by_id)} keys, prefix={self.prefix!r})"

    def __len__(self) -> int:
        return len(self._by_id)

    @staticmethod
    def hash(key: str) -> str:
        """The ``key_hash`` of a record for ``key`` (``sha256:<hex>``), for keys made elsewhere.

        >>> APIKeys.hash("sk-a.b")[:7]
        'sha256:'
        """
        return hash_key(key)

    @staticmethod
    def generate(
        id: str,
        *,
        scopes: Sequence[str] | str = (),
        tier: str | None = None,
        prefix: str = "sk-",
    ) -> tuple[str, APIKey]:
        """A fresh key and its record; show the key once, store only the record."""
        key = f"{prefix}{id}{_SEPARATOR}{secrets.token_urlsafe(32)}"
        return key, APIKey(id=id, key_hash=hash_key(key), scopes=scopes, tier=tier)

    def claims(self, token: str) -> bool:
        """Whether ``token`` has this key format's prefix (and so must be an API key)."""
        return token.startswith(self.prefix)

    def lookup(self, key: str) -> APIKey | None:
        """The record of ``key``, or ``None`` when it is unknown or wrong."""
        head, sep, secret = key.removeprefix(self.prefix).rpartition(_SEPARATOR)
        record = self._by_id.get(head) if sep and secret else None
        expected = record._digest if record is not None else _NO_DIGEST
        # hash and compare even for an unknown id, so both paths cost the same (the digest
        # itself, not its hex: hash_key's form, without writing it out per request)
        ok = hmac.compare_digest(hashlib.sha256(key.encode("utf-8")).digest(), expected)
        return record if ok and record is not None else None
