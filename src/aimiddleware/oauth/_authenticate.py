"""Turning a bearer token into a Principal: JWT or introspection, with a validation cache."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from .._lru import LRUCache
from ..principal import Credential, Principal, namespaced_id
from ._introspection import IntrospectionBusy, IntrospectionUnavailable
from ._jwks import KeysUnavailable, MetadataCache
from ._jwt import JWTVerifier, TokenInvalid, check_time_claims

if TYPE_CHECKING:
    import httpx

    from ._options import OAuthOptions

__all__ = ["Authenticated", "Authenticator", "Unavailable", "audiences"]

logger = logging.getLogger("aimiddleware.oauth")

_JWS_PREFIX: Final = "eyJ"  # base64url of '{"': every JWS compact header starts so
_INACTIVE_TTL: Final = 10.0
_BUSY_LOG_EVERY: Final = 60.0


class Unavailable(Exception):  # noqa: N818 (a state, not a bug)
    """A backend needed to decide (JWKS, introspection, replay store) did not answer."""


def audiences(config: OAuthOptions) -> frozenset[str] | None:
    """The audiences a token must name one of (``None``: the check is off)."""
    if not config.jwt.verify_audience:
        return None
    given = config.jwt.audiences
    return frozenset(given) if given is not None else frozenset({config.resource})


class Authenticated:
    """A validated token: the principal, its DPoP binding (``cnf.jkt``) and when it expires.

    ``decisions`` are the annotations every request with this credential records, written once
    here rather than per request.
    """

    __slots__ = ("decisions", "expires", "jkt", "principal")

    def __init__(self, principal: Principal, jkt: str | None, expires: float) -> None:
        self.principal = principal
        self.jkt = jkt
        self.expires = expires
        decisions: dict[str, str] = {
            "aimiddleware.auth.outcome": "authenticated",
            "aimiddleware.auth.credential": principal.credential,
            "aimiddleware.auth.principal": principal.id,
        }
        if principal.client_id is not None:
            decisions["aimiddleware.auth.client_id"] = principal.client_id
        decisions["aimiddleware.auth.scopes"] = " ".join(sorted(principal.scopes))
        self.decisions = decisions


def _scopes(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(s for s in value if isinstance(s, str))
    return frozenset()


class Authenticator:
    """Validates tokens and remembers the outcome by token hash, bounded, never past ``exp``."""

    def __init__(
        self,
        config: OAuthOptions,
        *,
        jwt: JWTVerifier | None,
        metadata: MetadataCache | None,
        client: Callable[[], httpx.AsyncClient],
    ) -> None:
        self.jwt = jwt
        self.introspection = config.introspection
        self._metadata = metadata
        self._client = client
        self._audiences = audiences(config)
        self._issuer = config.jwt.issuer
        self._leeway = config.jwt.leeway
        self._scope_claims = tuple(config.claims.scope_claims)
        self._tier_claim = config.claims.tier_claim
        self._default_tier = config.claims.default_tier
        self._principal_claims = tuple(config.claims.principal_claims)
        self._cache_ttl = config.cache_ttl
        cache_size = config.cache_size
        # validated tokens by digest, until their expiry (wall clock)
        self._cache: LRUCache[bytes, Authenticated] = LRUCache("oauth token cache", cache_size)
        # opaque tokens the authorization server called inactive, so that replaying a revoked
        # or made-up token does not turn into one introspection call per request (monotonic)
        self._inactive: LRUCache[bytes, bool] = LRUCache("oauth inactive-token cache", cache_size)
        self._busy_logged_at = -float("inf")

    def cached(self, digest: bytes, now: float) -> Authenticated | None:
        return self._cache.get(digest, now)

    async def authenticate(self, token: str, digest: bytes) -> Authenticated:
        """Validate ``token`` (``digest`` is its SHA-256, the only form ever kept).

        :raises TokenInvalid: the token is not acceptable.
        :raises Unavailable: the JWKS or the introspection endpoint could not be reached.
        """
        if self.jwt is not None and token.startswith(_JWS_PREFIX):
            try:
                claims = await self.jwt.verify(token)
            except KeysUnavailable as exc:
                raise Unavailable("the issuer's signing keys are unavailable") from exc
            credential: Credential = "jwt"
        elif self.introspection is not None:
            if self._inactive.get(digest, time.monotonic()):
                raise TokenInvalid("the token is not active")
            try:
                claims = await self._introspect(token)
            except TokenInvalid:
                now = time.monotonic()
                self._inactive.put(digest, True, now, now + _INACTIVE_TTL)
                raise
            credential = "introspection"
        else:
            raise TokenInvalid("the token is not a JWT access token")
        principal = self.principal(claims, credential)
        cnf = claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        ttl = self._cache_ttl
        if credential == "introspection" and self.introspection is not None:
            ttl = min(ttl, self.introspection.cache_ttl)
        expires = min(float(claims["exp"]), time.time() + ttl)
        entry = Authenticated(principal, jkt if isinstance(jkt, str) else None, expires)
        if ttl > 0:
            self._cache.put(digest, entry, time.time(), expires)
        return entry

    async def _introspect(self, token: str) -> dict[str, Any]:
        assert self.introspection is not None
        endpoint = self.introspection.endpoint
        try:
            if endpoint is None:
                if self._metadata is None:
                    raise IntrospectionUnavailable("no introspection endpoint configured")
                found = (await self._metadata.get()).get("introspection_endpoint")
                if not isinstance(found, str):
                    raise IntrospectionUnavailable("the issuer metadata has no endpoint")
                endpoint = found
            answer = await self.introspection.introspect(self._client(), endpoint, token)
        except IntrospectionBusy as exc:
            # a flood of made-up tokens: one line a minute, not one per refused request
            now = time.monotonic()
            if now - self._busy_logged_at >= _BUSY_LOG_EVERY:
                self._busy_logged_at = now
                logger.warning("token introspection refused: %s", exc)
            raise Unavailable("too many token introspections in flight") from exc
        except (IntrospectionUnavailable, KeysUnavailable) as exc:
            logger.warning("token introspection failed: %s", exc)
            raise Unavailable("the token introspection endpoint is unavailable") from exc
        if answer["active"] is not True:
            raise TokenInvalid("the token is not active")
        if self._issuer is not None and "iss" in answer and answer["iss"] != self._issuer:
            raise TokenInvalid("the token issuer is not trusted")
        aud = answer.get("aud")
        if self._audiences is not None:
            # RFC 8707 / RFC 9068 section 4, as for JWTs: an answer that names no audience
            # may be a token issued for any other resource of the same authorization server
            values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not any(isinstance(a, str) and a in self._audiences for a in values):
                raise TokenInvalid("the token audience does not include this resource")
        if "exp" not in answer:
            # RFC 7662 makes exp optional; without it the answer is trusted for cache_ttl only
            answer = {**answer, "exp": time.time() + self.introspection.cache_ttl}
        check_time_claims(answer, time.time(), self._leeway)
        return answer

    def principal(self, claims: dict[str, Any], credential: Credential) -> Principal:
        # the caller is the issuer's user (sub), else the token's client: never the client
        # before the user, or every user of one OAuth client would share records and limits
        iss = claims.get("iss")
        issuer = iss if isinstance(iss, str) and iss else self._issuer
        client_id = claims.get("client_id") or claims.get("azp")
        client_id = client_id if isinstance(client_id, str) and client_id else None
        principal_id = None
        for name in self._principal_claims:
            value = claims.get(name)
            if isinstance(value, str) and value:
                principal_id = namespaced_id("sub", value, issuer)
                break
        if principal_id is None:
            if client_id is None:
                raise TokenInvalid("the token names no subject or client")
            principal_id = namespaced_id("client", client_id, issuer)
        scopes: frozenset[str] = frozenset()
        for name in self._scope_claims:
            if name in claims:
                scopes = _scopes(claims[name])
                break
        tier = claims.get(self._tier_claim) if self._tier_claim else None
        subject = claims.get("sub")
        jti = claims.get("jti")
        return Principal(
            id=principal_id,
            subject=subject if isinstance(subject, str) else None,
            client_id=client_id,
            scopes=scopes,
            tier=tier if isinstance(tier, str) else self._default_tier,
            token_id=jti if isinstance(jti, str) else None,
            credential=credential,
            issuer=issuer,
            claims=claims,
        )


def token_digest(token: str) -> bytes:
    """The cache key of a token: its SHA-256 (the token itself is never stored)."""
    return hashlib.sha256(token.encode("ascii")).digest()


def same_key(a: str, b: str) -> bool:
    """Constant-time comparison of two thumbprints."""
    return hmac.compare_digest(a.encode(), b.encode())
