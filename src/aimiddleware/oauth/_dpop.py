"""DPoP (RFC 9449): proof-of-possession for access tokens, checked per request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import quote

from joserfc import jwk, jws
from joserfc.errors import JoseError
from joserfc.jws import JWSRegistry

from .._config import check_bool, check_seconds
from .._urls import normalize_url
from .._workers import warn_if_several_workers
from ..context import Scope
from ..exceptions import ConfigurationError
from ..stores import MemoryStore, Store
from ._jwt import ASYMMETRIC_ALGORITHMS

__all__ = ["DPoP", "DPoPError", "access_token_hash", "request_url"]

_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})
_MAX_PROOF: Final = 4096


class DPoPError(Exception):
    """A proof was refused: ``error`` is ``invalid_dpop_proof`` or ``use_dpop_nonce``."""

    def __init__(self, error: str, description: str, nonce: str | None = None) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.nonce = nonce


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(token: str) -> str:
    """The ``ath`` claim: base64url of the SHA-256 of the access token (RFC 9449 section 4.2)."""
    return _b64url(hashlib.sha256(token.encode("ascii")).digest())


# what may stay unencoded in a path (RFC 3986 pchar and "/"): the rest of a decoded route
# path is percent-encoded again before comparison
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~"


def request_url(scope: Scope, origin: str) -> str:
    """The URL this request has for its client: the configured resource origin, and the path,
    normalised for the ``htu`` comparison.

    Never the request's ``Host`` header: it is the client's to write, so a proof made for
    another origin could otherwise be made to match by sending that origin as ``Host``.
    """
    raw: bytes | None = scope.get("raw_path")
    if raw:
        # as sent, percent-encodings included: "a%2Fb" and "a/b" are different paths
        path = raw.partition(b"?")[0].decode("latin-1")
    else:
        path = quote(scope["path"], safe=_PATH_SAFE)
    root: str = scope.get("root_path", "")
    if root and not path.startswith(root):
        path = root + path
    return normalize_url(origin + path) or origin + "/"


class DPoP:
    """Accept DPoP-bound access tokens (``Authorization: DPoP <token>`` plus a ``DPoP`` proof).

    Each proof is checked for ``typ=dpop+jwt``, an allowed asymmetric ``alg``, its signature
    with the embedded public ``jwk``, ``htm`` of this request, ``htu`` equal to the resource's
    origin plus the request path (after RFC 3986 normalisation), an ``iat`` within
    ``max_age`` (plus ``leeway``), ``ath`` of the presented token, and a ``jti`` seen only once
    (remembered in ``store``, so a Redis store covers every worker). The token's ``cnf.jkt``
    must be the proof key's thumbprint. With ``nonce_secret`` set, proofs must carry a
    server nonce (``use_dpop_nonce`` challenge with a ``DPoP-Nonce`` header otherwise); nonces
    are stateless HMACs of a time window. ``required=True`` refuses plain Bearer tokens.

    >>> DPoP(required=True).required
    True
    """

    def __init__(
        self,
        *,
        required: bool = False,
        algorithms: Sequence[str] = ("ES256", "Ed25519", "PS256", "RS256"),
        max_age: float = 60.0,
        leeway: float = 5.0,
        store: Store | None = None,
        nonce_secret: bytes | None = None,
        nonce_window: float = 60.0,
        key_prefix: str = "aimw:dpop:",
    ) -> None:
        algs = tuple(algorithms)
        bad = [a for a in algs if a not in ASYMMETRIC_ALGORITHMS]
        if not algs or bad:
            raise ConfigurationError(f"DPoP algorithms must be asymmetric, got {bad or 'none'}")
        check_seconds("max_age", max_age)
        check_seconds("leeway", leeway, zero=True)
        check_seconds("nonce_window", nonce_window)
        if nonce_secret is not None and len(nonce_secret) < 16:
            raise ConfigurationError("nonce_secret must be at least 16 bytes")
        self.required = check_bool("required", required)
        self.algorithms = algs
        self.max_age = max_age
        self.leeway = leeway
        self.store = store if store is not None else MemoryStore()
        self._check_workers = not self.store.shared
        self._nonce_secret = nonce_secret
        self.nonce_window = nonce_window
        self.key_prefix = key_prefix
        self._registries = {a: JWSRegistry(algorithms=[a], strict_check_header=False) for a in algs}

    def __repr__(self) -> str:
        return (
            f"DPoP(required={self.required}, algorithms={self.algorithms!r}, "
            f"max_age={self.max_age}, nonce={'on' if self._nonce_secret else 'off'}, "
            f"store={type(self.store).__name__})"
        )

    # -- nonces ------------------------------------------------------------------------------

    def _nonce_for(self, window: int) -> str:
        assert self._nonce_secret is not None
        packed = struct.pack(">Q", window)
        mac = hmac.new(self._nonce_secret, packed, hashlib.sha256).digest()[:16]
        return _b64url(packed + mac)

    def nonce(self, now: float) -> str | None:
        """The nonce to hand out now (``None`` when nonces are off)."""
        if self._nonce_secret is None:
            return None
        return self._nonce_for(int(now // self.nonce_window))

    def _nonce_ok(self, value: Any, now: float) -> bool:
        if not isinstance(value, str):
            return False
        current = int(now // self.nonce_window)
        return any(hmac.compare_digest(value, self._nonce_for(w)) for w in (current, current - 1))

    # -- proofs ------------------------------------------------------------------------------

    async def verify(self, proof: str, *, method: str, url: str, token: str, now: float) -> str:
        """Check one proof for one request and return its key's thumbprint (``jkt``).

        :raises DPoPError: the proof is not acceptable.
        :raises StoreUnavailable: the replay cache could not be reached.
        """
        invalid = "invalid_dpop_proof"
        if len(proof) > _MAX_PROOF:
            raise DPoPError(invalid, "the DPoP proof is too large")
        try:
            obj = jws.extract_compact(proof.encode("ascii"))
        except (JoseError, ValueError, UnicodeError):
            raise DPoPError(invalid, "the DPoP proof is not a well-formed JWT") from None
        header = obj.headers()
        if header.get("typ") != "dpop+jwt":
            raise DPoPError(invalid, "the DPoP proof typ must be dpop+jwt")
        alg = header.get("alg")
        registry = self._registries.get(alg) if isinstance(alg, str) else None
        if registry is None:
            raise DPoPError(invalid, "the DPoP proof algorithm is not allowed")
        public = header.get("jwk")
        if not isinstance(public, dict) or _PRIVATE_MEMBERS & public.keys():
            raise DPoPError(invalid, "the DPoP proof must carry a public jwk")
        try:
            key = jwk.import_key(public)
            ok = jws.validate_compact(obj, key, registry=registry)
            jkt = jwk.thumbprint(public)
        except (JoseError, ValueError, TypeError, KeyError):
            ok = False
        if not ok:
            raise DPoPError(invalid, "the DPoP proof signature is invalid")
        try:
            claims = json.loads(obj.payload)
        except (TypeError, ValueError):
            claims = None
        if not isinstance(claims, dict):
            raise DPoPError(invalid, "the DPoP proof payload is not a JSON object")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise DPoPError(invalid, "the DPoP proof has no valid jti")
        if claims.get("htm") != method:
            raise DPoPError(invalid, "the DPoP proof htm does not match the request method")
        htu = claims.get("htu")
        if not isinstance(htu, str) or len(htu) > _MAX_PROOF or normalize_url(htu) != url:
            raise DPoPError(invalid, "the DPoP proof htu does not match the request URL")
        iat = claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, int | float):
            raise DPoPError(invalid, "the DPoP proof has no valid iat")
        if iat > now + self.leeway or iat < now - self.max_age - self.leeway:
            raise DPoPError(invalid, "the DPoP proof iat is outside the accepted window")
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(ath, access_token_hash(token)):
            raise DPoPError(invalid, "the DPoP proof ath does not match the access token")
        if self._nonce_secret is not None and not self._nonce_ok(claims.get("nonce"), now):
            raise DPoPError(
                "use_dpop_nonce", "the DPoP proof needs the server nonce", self.nonce(now)
            )
        # one use per (key, jti); the entry outlives the window in which the proof is valid
        replay_key = self.key_prefix + hashlib.sha256(f"{jkt}|{jti}".encode()).hexdigest()[:32]
        ttl = self.max_age + 2 * self.leeway
        if self._check_workers:  # said once, on the first proof
            self._check_workers = False
            warn_if_several_workers("DPoP", "proof replay cache (memory store)")
        if await self.store.claim(replay_key, b"1", ttl) is not None:
            raise DPoPError(invalid, "the DPoP proof was already used")
        return jkt
