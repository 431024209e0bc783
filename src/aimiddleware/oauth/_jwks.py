"""Where the issuer's keys come from: RFC 8414 / OIDC discovery and an async JWKS cache.

The cache refetches after ``ttl``, and early on an unknown ``kid`` (key rotation) but at most
once per ``cooldown``; a ``kid`` that is still unknown after a fetch is remembered for
``negative_ttl`` so a flood of made-up kids costs no fetches. Concurrent fetches are coalesced
into one, and a failed fetch keeps the last good key set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

from joserfc import jwk

from .._lru import LRUCache
from ._http import fetch_json as http_json

if TYPE_CHECKING:
    import httpx

__all__ = ["Coalesced", "JWKSCache", "KeysUnavailable", "MetadataCache", "metadata_urls"]

logger = logging.getLogger("aimiddleware.oauth")

_MAX_DOCUMENT: Final = 1 << 20
_MAX_NEGATIVE: Final = 4096
T = TypeVar("T")

ClientFactory = Callable[[], "httpx.AsyncClient"]


class KeysUnavailable(Exception):  # noqa: N818 (a state, not a bug)
    """No key set could be obtained (and none was ever obtained)."""


class Coalesced:
    """At most one run of an async operation at a time; concurrent callers share its result."""

    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task: asyncio.Future[Any] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self, factory: Callable[[], Awaitable[T]]) -> T:
        task = self._task
        if task is None or task.done():
            task = self._task = asyncio.ensure_future(factory())
        # shield: a caller that is cancelled (client gone) must not cancel the shared fetch
        result: T = await asyncio.shield(task)
        return result


async def fetch_json(client: httpx.AsyncClient, url: str, limit_s: float) -> dict[str, Any]:
    """GET a JSON object within ``limit_s`` seconds in all; any transport, deadline, size,
    status or format problem raises ``KeysUnavailable``."""
    return await http_json(
        client, url, limit=_MAX_DOCUMENT, deadline=limit_s, error=KeysUnavailable
    )


def metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 section 3.1 (well-known suffix inserted before the path), then OIDC Discovery."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    rfc8414 = urlunsplit(
        (parts.scheme, parts.netloc, "/.well-known/oauth-authorization-server" + path, "", "")
    )
    oidc = issuer.rstrip("/") + "/.well-known/openid-configuration"
    return [rfc8414, oidc]


class MetadataCache:
    """The authorization server's metadata, fetched once (coalesced, retried after a cooldown).

    The document's ``issuer`` must equal the configured issuer exactly (RFC 8414 section 3.3),
    otherwise it is ignored: a metadata document cannot redirect trust to another issuer.
    """

    def __init__(
        self, issuer: str, client: ClientFactory, *, timeout: float, cooldown: float
    ) -> None:
        self.issuer = issuer
        self._client = client
        self._timeout = timeout
        self._cooldown = cooldown
        self._document: dict[str, Any] | None = None
        self._failed_at = -float("inf")
        self._error = "not fetched yet"
        self._inflight = Coalesced()

    async def get(self) -> dict[str, Any]:
        if self._document is not None:
            return self._document
        if time.monotonic() - self._failed_at < self._cooldown:
            raise KeysUnavailable(self._error)
        return await self._inflight.run(self._fetch)

    async def _fetch(self) -> dict[str, Any]:
        if self._document is not None:
            return self._document
        errors: list[str] = []
        for url in metadata_urls(self.issuer):
            try:
                document = await fetch_json(self._client(), url, self._timeout)
            except KeysUnavailable as exc:
                errors.append(str(exc))
                continue
            if document.get("issuer") != self.issuer:
                errors.append(f"issuer mismatch in {url}")
                continue
            self._document = document
            return document
        self._failed_at = time.monotonic()
        self._error = "; ".join(errors)
        logger.warning("authorization server metadata unavailable: %s", self._error)
        raise KeysUnavailable(self._error)


def import_keys(document: Mapping[str, Any]) -> dict[str | None, list[jwk.Key]]:
    """The usable public signature keys of a JWKS, by ``kid``; unusable entries are skipped.

    Symmetric (``oct``) keys are never taken from a key set: a public JWKS that carries one is
    misconfigured, and using it would let anyone who fetched it sign tokens.
    """
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise KeysUnavailable("the JWKS has no 'keys' list")
    keys: dict[str | None, list[jwk.Key]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        public = {k: v for k, v in entry.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        try:
            key = jwk.import_key(public)
        except Exception:
            continue
        kid = entry.get("kid")
        keys.setdefault(kid if isinstance(kid, str) else None, []).append(key)
    return keys


class JWKSCache:
    """The issuer's signing keys, fetched asynchronously and cached.

    ``source`` is a ``jwks_uri``, or ``None`` to discover it from the issuer's metadata;
    ``static`` is a JWKS dict used as is (no fetching at all).
    """

    def __init__(
        self,
        *,
        jwks_uri: str | None,
        metadata: MetadataCache | None,
        static: Mapping[str, Any] | None,
        client: ClientFactory,
        ttl: float,
        cooldown: float,
        negative_ttl: float,
        timeout: float,
    ) -> None:
        self._jwks_uri = jwks_uri
        self._metadata = metadata
        self._client = client
        self._ttl = ttl
        self._cooldown = cooldown
        self._negative_ttl = negative_ttl
        self._timeout = timeout
        self._keys: dict[str | None, list[jwk.Key]] | None = None
        self._static = static is not None
        if static is not None:
            self._keys = import_keys(static)
        self._fetched_at = -float("inf")
        self._attempted_at = -float("inf")
        # kids the issuer did not have at the last fetch, until negative_ttl passes; bounded,
        # since kids are the token's (the client's) to choose
        self._unknown: LRUCache[str | None, bool] = LRUCache("oauth unknown kids", _MAX_NEGATIVE)
        self._inflight = Coalesced()
        self.fetches = 0  # how many times the JWKS was requested (observability, tests)

    async def keys_for(self, kid: str | None) -> list[jwk.Key]:
        """The candidate keys for a token's ``kid`` (empty when the issuer has no such key).

        :raises KeysUnavailable: no key set was ever obtained and fetching fails now.
        """
        keys = self._keys
        if self._static:
            assert keys is not None
            return self._pick(keys, kid)
        now = time.monotonic()
        if keys is None or now - self._fetched_at >= self._ttl:
            if now - self._attempted_at >= self._cooldown or self._inflight.running:
                keys = await self._refresh(keys)
            elif keys is None:
                # an outage at start-up: answer fast until the cooldown allows another try
                raise KeysUnavailable("no key set yet; the last fetch failed")
            return self._pick(keys, kid)
        found = self._pick(keys, kid)
        if found:
            return found
        if self._unknown.get(kid, now):
            return []
        if now - self._attempted_at >= self._cooldown:
            keys = await self._refresh(keys)
            found = self._pick(keys, kid)
        if not found:
            later = time.monotonic()
            self._unknown.put(kid, True, later, later + self._negative_ttl)
        return found

    @staticmethod
    def _pick(keys: dict[str | None, list[jwk.Key]], kid: str | None) -> list[jwk.Key]:
        if kid is not None:
            return keys.get(kid, [])
        # no kid in the token: every key is a candidate (issuers with one key often omit it)
        return [key for group in keys.values() for key in group]

    async def _refresh(
        self, previous: dict[str | None, list[jwk.Key]] | None
    ) -> dict[str | None, list[jwk.Key]]:
        try:
            return await self._inflight.run(self._fetch)
        except KeysUnavailable:
            if previous is None:
                raise
            return previous  # the last good set stays in use

    async def _fetch(self) -> dict[str | None, list[jwk.Key]]:
        self._attempted_at = time.monotonic()
        try:
            uri = self._jwks_uri
            if uri is None:
                assert self._metadata is not None
                document = await self._metadata.get()
                found = document.get("jwks_uri")
                if not isinstance(found, str) or not found.startswith(("https://", "http://")):
                    raise KeysUnavailable("the issuer metadata has no usable jwks_uri")
                uri = self._jwks_uri = found
            self.fetches += 1
            keys = import_keys(await fetch_json(self._client(), uri, self._timeout))
        except KeysUnavailable as exc:
            kept = sum(len(v) for v in self._keys.values()) if self._keys else 0
            logger.warning("JWKS fetch failed: %s; keeping %d keys of the last good set", exc, kept)
            raise
        self._keys = keys
        self._fetched_at = time.monotonic()
        self._unknown.clear()
        return keys
