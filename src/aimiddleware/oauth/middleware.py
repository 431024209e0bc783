"""OAuthMiddleware: an OAuth 2.1 resource server in front of an ASGI app."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from .._asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    annotate,
    get_annotations,
    get_headers,
    route_path,
    send_json,
)
from ..exceptions import ConfigurationError, StoreUnavailable
from ..principal import Principal, set_principal
from ._apikeys import APIKeys
from ._authenticate import Authenticated, Authenticator, Unavailable, same_key, token_digest
from ._dpop import DPoP, DPoPError, request_url
from ._errors import AuthError, Challenger, insufficient_scope
from ._introspection import Introspection
from ._jwks import JWKSCache, MetadataCache
from ._jwt import JWTVerifier, TokenInvalid
from ._metadata import metadata_document, metadata_paths, metadata_url
from ._options import check_algorithms, check_scopes, check_url, positive
from ._rules import CompiledRules, ScopeRule

if TYPE_CHECKING:
    import httpx

__all__ = ["CHALLENGER_KEY", "OAuthMiddleware"]

logger = logging.getLogger("aimiddleware.oauth")

CHALLENGER_KEY: Final = "aimiddleware.oauth.challenger"
_B64TOKEN: Final = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
_DEFAULT_ALGORITHMS: Final = ("RS256", "PS256", "ES256", "Ed25519")


_SCOPE_LISTS: dict[frozenset[str], str] = {}


def _scope_list(scopes: frozenset[str]) -> str:
    """``scopes`` as one sorted, space-separated string, remembered: a server sees few
    distinct scope sets, and this runs on every authenticated request."""
    found = _SCOPE_LISTS.get(scopes)
    if found is None:
        if len(_SCOPE_LISTS) >= 1024:  # bounded whatever issuers put in their tokens
            _SCOPE_LISTS.clear()
        found = _SCOPE_LISTS[scopes] = " ".join(sorted(scopes))
    return found


def _dpop_scheme(scope: Scope) -> bool:
    """Whether the request authenticates with ``Authorization: DPoP ...``."""
    values = get_headers(scope["headers"], b"authorization")
    return len(values) == 1 and values[0].partition(b" ")[0].lower() == b"dpop"


class OAuthMiddleware:
    """Authenticate every request as an OAuth 2.1 resource server and enforce route scopes.

    Credentials: RFC 9068 JWT access tokens (keys from the issuer's JWKS), opaque tokens via
    RFC 7662 introspection, API keys, optionally DPoP-bound (RFC 9449). The validated
    :class:`~aimiddleware.Principal` goes into the scope; the token itself goes nowhere.
    Refusals are JSON in the OpenAI error envelope with RFC 6750 / MCP challenges, and the
    RFC 9728 metadata is served at ``/.well-known/oauth-protected-resource``.

    >>> from starlette.applications import Starlette
    >>> app = OAuthMiddleware(
    ...     Starlette(),
    ...     resource="https://api.example.com",
    ...     issuer="https://auth.example.com",
    ...     rules=[ScopeRule("/v1/chat/completions", ["chat"], methods=["POST"])],
    ...     public_paths=["/health"],
    ... )
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        resource: str,
        issuer: str | None = None,
        jwks_uri: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        audiences: Sequence[str] | None = None,
        verify_audience: bool = True,
        algorithms: Sequence[str] = _DEFAULT_ALGORITHMS,
        require_typ: bool = True,
        leeway: float = 30.0,
        introspection: Introspection | None = None,
        api_keys: APIKeys | None = None,
        dpop: DPoP | None = None,
        rules: Sequence[ScopeRule] = (),
        public_paths: Sequence[str] = (),
        default_scopes: Sequence[str] | str = (),
        allow_anonymous: bool = False,
        scope_claims: Sequence[str] = ("scope", "scp"),
        tier_claim: str | None = "tier",
        default_tier: str | None = None,
        principal_claims: Sequence[str] = ("sub",),
        authorization_servers: Sequence[str] | None = None,
        scopes_supported: Sequence[str] = (),
        resource_name: str | None = None,
        resource_documentation: str | None = None,
        realm: str | None = None,
        serve_metadata: bool = True,
        jwks_ttl: float = 300.0,
        jwks_cooldown: float = 30.0,
        unknown_kid_ttl: float = 60.0,
        http_timeout: float = 5.0,
        cache_size: int = 10_000,
        cache_ttl: float = 300.0,
        unavailable_status: Literal[401, 503] = 503,
        retry_after: int = 5,
        max_header_bytes: int = 8192,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.app = app
        self.resource = check_url("resource", resource)
        parts = urlsplit(resource)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        if issuer is not None:
            check_url("issuer", issuer)
        if jwks_uri is not None:
            check_url("jwks_uri", jwks_uri)
        if (jwks_uri is not None or jwks is not None) and issuer is None:
            raise ConfigurationError("jwks_uri/jwks need the issuer whose tokens they verify")
        if jwks_uri is not None and jwks is not None:
            raise ConfigurationError("give either jwks_uri or a static jwks, not both")
        if issuer is None and introspection is None and api_keys is None:
            raise ConfigurationError(
                "nothing to authenticate with: set issuer, introspection or api_keys"
            )
        if introspection is not None and not isinstance(introspection, Introspection):
            raise ConfigurationError("introspection must be an Introspection object")
        if introspection is not None and introspection.endpoint is None and issuer is None:
            raise ConfigurationError("introspection without endpoint needs the issuer metadata")
        if api_keys is not None and not isinstance(api_keys, APIKeys):
            raise ConfigurationError("api_keys must be an APIKeys object")
        if dpop is not None and not isinstance(dpop, DPoP):
            raise ConfigurationError("dpop must be a DPoP object")
        if unavailable_status not in (401, 503):
            raise ConfigurationError("unavailable_status must be 401 or 503")
        if not 256 <= max_header_bytes <= 65536:
            raise ConfigurationError("max_header_bytes must be between 256 and 65536")
        if cache_size < 1:
            raise ConfigurationError("cache_size must be >= 1")
        if not principal_claims or not scope_claims:
            raise ConfigurationError("principal_claims and scope_claims cannot be empty")
        if {"client_id", "azp"} & set(principal_claims):
            raise ConfigurationError(
                "principal_claims name the user of a token (such as 'sub'), not its client: a "
                "token without them is its client already; to count rate limits per OAuth "
                "client, use RateLimitMiddleware(key_by='client')"
            )
        self.issuer = issuer
        self.api_keys = api_keys
        self.dpop = dpop
        self.allow_anonymous = allow_anonymous
        self.unavailable_status = unavailable_status
        self.retry_after = int(positive("retry_after", retry_after, zero=True))
        self.max_header_bytes = max_header_bytes
        self._http = http_client
        self._owns_http = http_client is None
        self._timeout = positive("http_timeout", http_timeout)

        aud = frozenset(audiences) if audiences is not None else frozenset({resource})
        self.audiences = aud if verify_audience else None
        metadata = (
            MetadataCache(issuer, self._client, timeout=self._timeout, cooldown=jwks_cooldown)
            if issuer is not None and (jwks is None or introspection is not None)
            else None
        )
        verifier = None
        if issuer is not None:
            keys = JWKSCache(
                jwks_uri=jwks_uri,
                metadata=metadata,
                static=jwks,
                client=self._client,
                ttl=positive("jwks_ttl", jwks_ttl),
                cooldown=positive("jwks_cooldown", jwks_cooldown, zero=True),
                negative_ttl=positive("unknown_kid_ttl", unknown_kid_ttl, zero=True),
                timeout=self._timeout,
            )
            verifier = JWTVerifier(
                issuer=issuer,
                audiences=self.audiences,
                algorithms=check_algorithms(algorithms),
                leeway=positive("leeway", leeway, zero=True),
                require_typ=require_typ,
                keys=keys,
            )
        self.keys = verifier.keys if verifier is not None else None
        self._auth = Authenticator(
            jwt=verifier,
            introspection=introspection,
            metadata=metadata,
            client=self._client,
            audiences=self.audiences,
            issuer=issuer,
            leeway=leeway,
            scope_claims=scope_claims,
            tier_claim=tier_claim,
            default_tier=default_tier,
            principal_claims=principal_claims,
            cache_size=cache_size,
            cache_ttl=positive("cache_ttl", cache_ttl, zero=True),
        )

        default = ScopeRule(
            "/*",
            check_scopes("default_scopes", default_scopes),
            auth="optional" if allow_anonymous else "required",
        )
        public = [ScopeRule(p, auth="public") for p in public_paths]
        self.rules = CompiledRules([*public, *rules], default)
        servers = list(authorization_servers or ([issuer] if issuer else []))
        for server in servers:
            check_url("authorization_servers", server)
        supported = tuple(
            dict.fromkeys([*self.rules.scopes_supported, *check_scopes("scopes", scopes_supported)])
        )
        dpop_algs = dpop.algorithms if dpop is not None else ()
        self._metadata_paths = metadata_paths(resource) if serve_metadata else frozenset()
        self.metadata = metadata_document(
            resource=resource,
            authorization_servers=servers,
            scopes_supported=supported,
            dpop_algorithms=dpop_algs,
            dpop_required=dpop is not None and dpop.required,
            resource_name=resource_name,
            resource_documentation=resource_documentation,
        )
        self.challenger = Challenger(
            resource_metadata=metadata_url(resource) if serve_metadata else None,
            realm=realm,
            dpop_algs=dpop_algs,
            dpop_required=dpop is not None and dpop.required,
        )

    def __repr__(self) -> str:
        kinds = [
            k
            for k, on in (
                ("jwt", self.issuer is not None),
                ("introspection", self._auth.introspection is not None),
                ("api_keys", self.api_keys is not None),
                ("dpop", self.dpop is not None),
            )
            if on
        ]
        return (
            f"OAuthMiddleware(resource={self.resource!r}, issuer={self.issuer!r}, "
            f"credentials={kinds})"
        )

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client this middleware opened (done at lifespan shutdown too)."""
        if self._owns_http and self._http is not None:
            client, self._http = self._http, None
            await client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self.app(scope, receive, self._lifespan_send(send))
            else:
                await self.app(scope, receive, send)
            return
        path = route_path(scope)
        method: str = scope["method"]
        if path in self._metadata_paths and method in ("GET", "HEAD"):
            await self._send_metadata(send)
            return
        rule = self.rules.match(path, method)
        if rule.auth == "public":
            await self.app(scope, receive, send)
            return
        scope[CHALLENGER_KEY] = self.challenger
        try:
            principal = await self._authenticate(scope, rule)
        except AuthError as error:
            if self.dpop is not None and _dpop_scheme(scope):
                # RFC 9449 section 7.1: a DPoP request is answered in the DPoP challenge
                error.scheme = "DPoP"
            if error.status == 401 and not error.scopes:
                # RFC 6750 section 3.1: say which scope the resource needs, so that a client
                # that has to obtain a new token asks for enough
                error.scopes = rule.required
            await self._refuse(scope, send, error)
            return
        if principal is None:
            annotate(scope, "aimiddleware.auth.outcome", "anonymous")
        else:
            set_principal(scope, principal)
        await self.app(scope, receive, send)

    def _lifespan_send(self, send: Send) -> Send:
        async def _send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.aclose()
            await send(message)

        return _send

    async def _send_metadata(self, send: Send) -> None:
        headers = [
            (b"cache-control", b"public, max-age=3600"),
            (b"access-control-allow-origin", b"*"),
        ]
        await send_json(send, 200, self.metadata, headers)

    async def _refuse(self, scope: Scope, send: Send, error: AuthError) -> None:
        annotate(scope, "aimiddleware.auth.outcome", "refused")
        annotate(scope, "aimiddleware.auth.status", error.status)
        if error.error is not None:
            annotate(scope, "aimiddleware.auth.error", error.error)
        await send_json(send, error.status, error.body(), self.challenger.headers(error))

    async def _authenticate(self, scope: Scope, rule: ScopeRule) -> Principal | None:
        query: bytes = scope.get("query_string", b"")
        if b"access_token" in query and any(
            part.split(b"=", 1)[0] == b"access_token" for part in query.split(b"&")
        ):
            raise AuthError(400, "invalid_request", "access tokens in the query string are refused")
        headers = scope["headers"]
        values = get_headers(headers, b"authorization")
        if not values:
            if rule.auth == "optional":
                return None
            raise AuthError(401, None, "authentication required", scopes=rule.required)
        if len(values) > 1:
            raise AuthError(400, "invalid_request", "more than one Authorization header")
        value = values[0]
        if len(value) > self.max_header_bytes:
            raise AuthError(400, "invalid_request", "the Authorization header is too large")
        scheme, _, raw = value.partition(b" ")
        scheme = scheme.lower()
        if scheme not in (b"bearer", b"dpop") or (scheme == b"dpop" and self.dpop is None):
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
        elif self.dpop is not None and self.dpop.required:
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
        if self.api_keys is not None and self.api_keys.claims(token):
            record = self.api_keys.lookup(token)
            if record is None:
                raise AuthError(401, "invalid_token", "the API key is not valid")
            if is_dpop:
                raise AuthError(400, "invalid_request", "API keys cannot be DPoP-bound")
            principal = record.principal()
            return Authenticated(principal, None, float("inf"))
        digest = token_digest(token)
        entry = self._auth.cached(digest, time.time())
        if entry is not None:
            return entry
        try:
            return await self._auth.authenticate(token, digest)
        except TokenInvalid as exc:
            raise AuthError(401, "invalid_token", str(exc)) from None
        except Unavailable as exc:
            raise self._unavailable(str(exc)) from None

    def _unavailable(self, description: str) -> AuthError:
        if self.unavailable_status == 401:
            return AuthError(401, "invalid_token", description + "; try again later",
                             retry_after=self.retry_after)  # fmt: skip
        return AuthError(503, None, description, retry_after=self.retry_after)

    async def _check_proof(self, scope: Scope, token: str, entry: Authenticated) -> None:
        dpop = self.dpop
        assert dpop is not None  # the scheme is refused above when DPoP is off
        proofs = get_headers(scope["headers"], b"dpop")
        if len(proofs) != 1:
            raise AuthError(401, "invalid_dpop_proof", "exactly one DPoP proof header is needed",
                            scheme="DPoP")  # fmt: skip
        now = time.time()
        try:
            jkt = await dpop.verify(
                proofs[0].decode("latin-1"),
                method=scope["method"],
                url=request_url(scope, self._origin),
                token=token,
                now=now,
            )
        except DPoPError as exc:
            raise AuthError(401, exc.error, exc.description, scheme="DPoP",
                            dpop_nonce=exc.nonce) from None  # fmt: skip
        except StoreUnavailable as exc:
            logger.warning("DPoP replay cache unavailable (%s); refusing DPoP requests", exc)
            raise self._unavailable("the DPoP replay cache is unavailable") from None
        if entry.jkt is None:
            raise AuthError(401, "invalid_token", "the token is not DPoP-bound")
        if not same_key(entry.jkt, jkt):
            raise AuthError(401, "invalid_token", "the DPoP proof key does not match the token")
        annotate(scope, "aimiddleware.auth.dpop", True)
