"""RFC 9068 JWT access tokens: header checks before any key is touched, signature, claims."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Final

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jws import JWSRegistry

from ._jwks import JWKSCache

__all__ = ["ASYMMETRIC_ALGORITHMS", "JWTVerifier", "TokenInvalid", "check_time_claims"]

ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA", "Ed25519", "Ed448",
    }
)  # fmt: skip
_AT_JWT: Final = frozenset({"at+jwt", "application/at+jwt"})
_MAX_TOKEN: Final = 8192


class TokenInvalid(Exception):  # noqa: N818 (the outcome of a check)
    """The token is not acceptable; the message is safe to show the client."""


def decode_segment_json(obj: jws.CompactSignature) -> dict[str, Any]:
    try:
        claims = json.loads(obj.payload)
    except (TypeError, ValueError) as exc:
        raise TokenInvalid("the token payload is not JSON") from exc
    if not isinstance(claims, dict):
        raise TokenInvalid("the token payload is not a JSON object")
    return claims


def check_time_claims(claims: dict[str, Any], now: float, leeway: float) -> None:
    """``exp`` (required), ``nbf`` and ``iat`` with ``leeway`` seconds of clock skew."""
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise TokenInvalid("the token has no valid exp claim")
    if now > exp + leeway:
        raise TokenInvalid("the token has expired")
    nbf = claims.get("nbf")
    if nbf is not None:
        if isinstance(nbf, bool) or not isinstance(nbf, int | float):
            raise TokenInvalid("the token nbf claim is not a number")
        if now + leeway < nbf:
            raise TokenInvalid("the token is not valid yet")
    iat = claims.get("iat")
    if iat is not None:
        if isinstance(iat, bool) or not isinstance(iat, int | float):
            raise TokenInvalid("the token iat claim is not a number")
        if now + leeway < iat:
            raise TokenInvalid("the token was issued in the future")


class JWTVerifier:
    """Verifies one issuer's JWT access tokens.

    Order matters: the algorithm is checked against the allow-list and the ``typ`` against
    RFC 9068 before a key is looked up, so ``alg=none`` or an HMAC token never reaches
    signature code; each allowed algorithm has its own registry, so a key can only verify the
    algorithm its type allows (no HS256 with an RSA public key).
    """

    def __init__(
        self,
        *,
        issuer: str,
        audiences: frozenset[str] | None,
        algorithms: frozenset[str],
        leeway: float,
        require_typ: bool,
        keys: JWKSCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audiences = audiences
        self.leeway = leeway
        self.require_typ = require_typ
        self.keys = keys
        self.clock = clock
        self._registries = {
            alg: JWSRegistry(algorithms=[alg], strict_check_header=False) for alg in algorithms
        }

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims once signature, issuer, audience and times check out."""
        if len(token) > _MAX_TOKEN:
            raise TokenInvalid("the token is too large")
        try:
            obj = jws.extract_compact(token.encode("ascii"))
        except (JoseError, ValueError, UnicodeError) as exc:
            raise TokenInvalid("the token is not a well-formed JWT") from exc
        header = obj.headers()
        alg = header.get("alg")
        registry = self._registries.get(alg) if isinstance(alg, str) else None
        if registry is None:
            raise TokenInvalid("the token algorithm is not allowed")
        if "crit" in header:
            raise TokenInvalid("the token has critical header parameters this server ignores")
        typ = header.get("typ")
        if self.require_typ and not (isinstance(typ, str) and typ.lower() in _AT_JWT):
            raise TokenInvalid("the token is not an RFC 9068 access token (typ must be at+jwt)")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenInvalid("the token kid is not a string")
        candidates = await self.keys.keys_for(kid)
        if not candidates:
            raise TokenInvalid("the token was signed with an unknown key")
        if not any(self._check(obj, key, registry) for key in candidates):
            raise TokenInvalid("the token signature is invalid")
        claims = decode_segment_json(obj)
        self.check_claims(claims)
        return claims

    @staticmethod
    def _check(obj: jws.CompactSignature, key: Any, registry: JWSRegistry) -> bool:
        try:
            return jws.validate_compact(obj, key, registry=registry)
        except (JoseError, ValueError, TypeError):
            return False

    def check_claims(self, claims: dict[str, Any]) -> None:
        if claims.get("iss") != self.issuer:
            raise TokenInvalid("the token issuer is not trusted")
        if self.audiences is not None:
            aud = claims.get("aud")
            values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not any(isinstance(a, str) and a in self.audiences for a in values):
                raise TokenInvalid("the token audience does not include this resource")
        check_time_claims(claims, self.clock(), self.leeway)
