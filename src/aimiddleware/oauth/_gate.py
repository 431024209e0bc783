"""One request's credential, checked: the ``Authorization`` header, the token, the DPoP proof.

:class:`Gate` is built once from the :class:`OAuthOptions` and holds what outlives requests (the
key and token caches); :meth:`Gate.principal` runs per request and raises :class:`AuthError`
for every refusal.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from .._asgi import get_headers
from .._challenges import AuthError, insufficient_scope
from ..context import Scope, annotate, get_annotations
from ..exceptions import StoreUnavailable
from ..principal import Principal
from ._authenticate import (
    Authenticated,
    Authenticator,
    Unavailable,
    audiences,
    same_key,
)
from ._dpop import DPoPError, request_url
from ._jwks import JWKSCache, MetadataCache
from ._jwt import JWTVerifier, TokenInvalid
from ._options import OAuthOptions
from ._rules import ScopeRule

if TYPE_CHECKING:
    import httpx

__all__ = ["Gate", "dpop_scheme"]

logger = logging.getLogger("aimiddleware.oauth")

_FOREVER: Final = math.inf
_MAX_KEY_ENTRIES: Final = 4096
# RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN_CHARS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"


def _is_b64token(raw: bytes) -> bool:
    """Whether ``raw`` is an RFC 6750 ``b64token`` (a scan in C, where a regular expression
    costs microseconds on a JWT's length).

    >>> _is_b64token(b"ab.c-d_e~f+g/h=="), _is_b64token(b"a=b"), _is_b64token(b"==")
    (True, False, False)
    """
    head = raw.rstrip(b"=")
    return bool(head) and not head.translate(None, _B64TOKEN_CHARS)


def dpop_scheme(scope: Scope) -> bool:
    """Whether the request authenticates with ``Authorization: DPoP ...``."""
    values = get_headers(scope["headers"], b"authorization")
    return len(values) == 1 and values[0].partition(b" ")[0].lower() == b"dpop"


class Gate:
    """Turns a request's credentials into its principal, per the options."""

    def __init__(self, config: OAuthOptions, client: Callable[[], httpx.AsyncClient]) -> None:
        self.config = config
        jwt = config.jwt
        issuer = jwt.issuer
        parts = urlsplit(config.resource)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        timeout = config.http_timeout
        metadata = (
            MetadataCache(issuer, client, timeout=timeout, cooldown=jwt.jwks_cooldown)
            if issuer is not None and (jwt.jwks is None or config.introspection is not None)
            else None
        )
        verifier = None
        if issuer is not None:
            keys = JWKSCache(
                jwks_uri=jwt.jwks_uri,
                metadata=metadata,
                static=jwt.jwks,
                client=client,
                ttl=jwt.jwks_ttl,
                cooldown=jwt.jwks_cooldown,
                negative_ttl=jwt.unknown_kid_ttl,
                timeout=timeout,
            )
            verifier = JWTVerifier(
                issuer=issuer,
                audiences=audiences(config),
                algorithms=frozenset(jwt.algorithms),
                leeway=jwt.leeway,
                require_typ=jwt.require_typ,
                keys=keys,
            )
        self.keys = verifier.keys if verifier is not None else None
        self.auth = Authenticator(config, jwt=verifier, metadata=metadata, client=client)
        # the outcome of each API key (its principal never changes), by key id
        self._keys: dict[str, Authenticated] = {}

    async def principal(self, scope: Scope, rule: ScopeRule) -> Principal | None:
        """The caller of this request (``None``: anonymous where ``rule`` allows it).

        :raises AuthError: the request is refused.
        """
        query: bytes = scope.get("query_string", b"")
        if b"access_token" in query and any(
            part.split(b"=", 1)[0] == b"access_token" for part in query.split(b"&")
        ):
            raise AuthError(400, "invalid_request", "access tokens in the query string are refused")
        values = get_headers(scope["headers"], b"authorization")
        if not values:
            if rule.auth == "optional":
                return None
            raise AuthError(401, None, "authentication required", scopes=rule.required)
        if len(values) > 1:
            raise AuthError(400, "invalid_request", "more than one Authorization header")
        value = values[0]
        if len(value) > self.config.max_authorization_bytes:
            raise AuthError(400, "invalid_request", "the Authorization header is too large")
        scheme, _, raw = value.partition(b" ")
        scheme = scheme.lower()
        dpop = self.config.dpop
        if scheme not in (b"bearer", b"dpop") or (scheme == b"dpop" and dpop is None):
            # another scheme (Basic ...): tell the client which one this resource speaks
            raise AuthError(401, None, "unsupported authorization scheme", scopes=rule.required)
        raw = raw.strip(b" ")
        if not _is_b64token(raw):
            raise AuthError(400, "invalid_request", "the Authorization header is malformed")
        token = raw.decode("ascii")
        is_dpop = scheme == b"dpop"
        # an API key or a token validated before is known without awaiting anything
        entry = self._known(token, raw, is_dpop)
        if entry is None:
            entry = await self._validate(token, hashlib.sha256(raw).digest())
        principal = entry.principal
        if is_dpop:
            await self._check_proof(scope, token, entry)
        elif entry.jkt is not None:
            raise AuthError(401, "invalid_token", "a DPoP-bound token was presented as Bearer")
        elif dpop is not None and dpop.required:
            raise AuthError(401, "invalid_token", "this resource needs DPoP-bound tokens",
                            scheme="DPoP")  # fmt: skip
        get_annotations(scope).update(entry.decisions)
        if not principal.scopes.issuperset(rule.required):
            raise insufficient_scope(principal.credential, principal.scopes, rule.required)
        return principal

    def _known(self, token: str, raw: bytes, is_dpop: bool) -> Authenticated | None:
        """The outcome of an API key, or of a token validated before; ``None``: validate it."""
        api_keys = self.config.api_keys
        if api_keys is not None and api_keys.claims(token):
            record = api_keys.lookup(token)
            if record is None:
                raise AuthError(401, "invalid_token", "the API key is not valid")
            if is_dpop:
                raise AuthError(400, "invalid_request", "API keys cannot be DPoP-bound")
            principal = record.principal()
            entry = self._keys.get(record.id)
            if entry is None or entry.principal is not principal:
                entry = Authenticated(principal, None, _FOREVER)
                # bounded, for a key store that looks keys up elsewhere (a subclass)
                if len(self._keys) < _MAX_KEY_ENTRIES or record.id in self._keys:
                    self._keys[record.id] = entry
            return entry
        # the cache key is the token's SHA-256 (token_digest): ``raw`` is its ASCII
        return self.auth.cached(hashlib.sha256(raw).digest(), time.time())

    async def _validate(self, token: str, digest: bytes) -> Authenticated:
        try:
            return await self.auth.authenticate(token, digest)
        except TokenInvalid as exc:
            raise AuthError(401, "invalid_token", str(exc)) from None
        except Unavailable as exc:
            raise self.unavailable(str(exc)) from None

    def unavailable(self, description: str) -> AuthError:
        """The refusal when a backend needed to decide did not answer (``unavailable_status``)."""
        retry_after = self.config.retry_after
        if self.config.unavailable_status == 401:
            return AuthError(401, "invalid_token", description + "; try again later",
                             retry_after=retry_after)  # fmt: skip
        return AuthError(503, None, description, retry_after=retry_after)

    async def _check_proof(self, scope: Scope, token: str, entry: Authenticated) -> None:
        dpop = self.config.dpop
        assert dpop is not None  # the scheme is refused above when DPoP is off
        proofs = get_headers(scope["headers"], b"dpop")
        if len(proofs) != 1:
            raise AuthError(401, "invalid_dpop_proof", "exactly one DPoP proof header is needed",
                            scheme="DPoP")  # fmt: skip
        try:
            jkt = await dpop.verify(
                proofs[0].decode("latin-1"),
                method=scope["method"],
                url=request_url(scope, self._origin),
                token=token,
                now=time.time(),
            )
        except DPoPError as exc:
            raise AuthError(401, exc.error, exc.description, scheme="DPoP",
                            dpop_nonce=exc.nonce) from None  # fmt: skip
        except StoreUnavailable as exc:
            logger.warning("DPoP replay cache unavailable (%s); refusing DPoP requests", exc)
            raise self.unavailable("the DPoP replay cache is unavailable") from None
        if entry.jkt is None:
            raise AuthError(401, "invalid_token", "the token is not DPoP-bound")
        if not same_key(entry.jkt, jkt):
            raise AuthError(401, "invalid_token", "the DPoP proof key does not match the token")
        annotate(scope, "aimiddleware.auth.dpop", True)
