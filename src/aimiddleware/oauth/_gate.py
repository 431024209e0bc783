"""One request's credential, checked: the ``Authorization`` header, the token, the DPoP proof.

:class:`Gate` is built once from the :class:`OAuthOptions` and holds what outlives requests (the
key and token caches); :meth:`Gate.principal` runs per request and raises :class:`AuthError`
for every refusal.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from .._asgi import get_headers
from .._challenges import AuthError, insufficient_scope
from .._lru import LRUCache
from ..context import Scope, annotate, get_annotations
from ..exceptions import StoreUnavailable
from ..principal import Principal
from ._authenticate import (
    Authenticated,
    Authenticator,
    Unavailable,
    audiences,
    same_key,
    token_digest,
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

_B64TOKEN: Final = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
# a server sees few distinct scope sets, and their annotation is written on every request
_SCOPE_LISTS: LRUCache[frozenset[str], str] = LRUCache("oauth scope lists", 1024)


def _scope_list(scopes: frozenset[str]) -> str:
    """``scopes`` as one sorted, space-separated string, remembered."""
    found = _SCOPE_LISTS.get(scopes, 0.0)
    if found is None:
        found = " ".join(sorted(scopes))
        _SCOPE_LISTS.put(scopes, found, 0.0)
    return found


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
        if not _B64TOKEN.fullmatch(raw):
            raise AuthError(400, "invalid_request", "the Authorization header is malformed")
        token = raw.decode("ascii")
        is_dpop = scheme == b"dpop"
        entry = await self._validate(token, is_dpop)
        principal = entry.principal
        if is_dpop:
            await self._check_proof(scope, token, entry)
        elif entry.jkt is not None:
            raise AuthError(401, "invalid_token", "a DPoP-bound token was presented as Bearer")
        elif dpop is not None and dpop.required:
            raise AuthError(401, "invalid_token", "this resource needs DPoP-bound tokens",
                            scheme="DPoP")  # fmt: skip
        decisions = get_annotations(scope)
        decisions["aimiddleware.auth.outcome"] = "authenticated"
        decisions["aimiddleware.auth.credential"] = principal.credential
        decisions["aimiddleware.auth.principal"] = principal.id
        if principal.client_id is not None:
            decisions["aimiddleware.auth.client_id"] = principal.client_id
        decisions["aimiddleware.auth.scopes"] = _scope_list(principal.scopes)
        if not principal.has_scopes(rule.required):
            raise insufficient_scope(principal.credential, principal.scopes, rule.required)
        return principal

    async def _validate(self, token: str, is_dpop: bool) -> Authenticated:
        api_keys = self.config.api_keys
        if api_keys is not None and api_keys.claims(token):
            record = api_keys.lookup(token)
            if record is None:
                raise AuthError(401, "invalid_token", "the API key is not valid")
            if is_dpop:
                raise AuthError(400, "invalid_request", "API keys cannot be DPoP-bound")
            return Authenticated(record.principal(), None, float("inf"))
        digest = token_digest(token)
        entry = self.auth.cached(digest, time.time())
        if entry is not None:
            return entry
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
