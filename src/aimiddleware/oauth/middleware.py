"""OAuthMiddleware: an OAuth 2.1 resource server in front of an ASGI app."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from .._asgi import close_on_shutdown, send_json
from .._challenges import AuthError, Challenger
from .._config import build_options
from .._signatures import options_signature, show_options
from ..context import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    annotate,
    route_path,
    set_challenger,
    set_principal,
)
from ..errors import send_error
from ._gate import Gate, dpop_scheme
from ._metadata import metadata_document, metadata_paths, metadata_url
from ._options import GROUPS, OAuthOptions, flat_fields
from ._rules import CompiledRules, ScopeRule

if TYPE_CHECKING:
    import httpx

__all__ = ["OAuthMiddleware"]

logger = logging.getLogger("aimiddleware.oauth")

# the Authorization header's bound was called max_header_bytes, which RequestGuardMiddleware
# uses for all headers together
_RENAMED: Final = {"max_header_bytes": "max_authorization_bytes"}


class OAuthMiddleware:
    """Authenticate every request as an OAuth 2.1 resource server and enforce route scopes.

    Credentials: RFC 9068 JWT access tokens (keys from the issuer's JWKS), opaque tokens via
    RFC 7662 introspection, API keys, optionally DPoP-bound (RFC 9449). The validated
    :class:`~aimiddleware.Principal` goes into the scope; the token itself goes nowhere.
    Refusals are errors in the OpenAI envelope (or RFC 9457 problem details, see
    ``aimiddleware.errors``) with RFC 6750 / MCP challenges, and the RFC 9728 metadata is
    served at ``/.well-known/oauth-protected-resource``.

    The options are keywords (below) or one :class:`~aimiddleware.oauth.OAuthOptions` as
    ``config``; ``max_header_bytes`` is the deprecated name of ``max_authorization_bytes``.

    >>> from starlette.applications import Starlette
    >>> app = OAuthMiddleware(
    ...     Starlette(),
    ...     resource="https://api.example.com",
    ...     issuer="https://auth.example.com",
    ...     rules=[ScopeRule("/v1/chat/completions", ["chat"], methods=["POST"])],
    ...     public_paths=["/health"],
    ... )
    """

    def __init__(self, app: ASGIApp, config: OAuthOptions | None = None, **options: Any) -> None:
        self.app = app
        self.config = config = build_options(
            "OAuthMiddleware", OAuthOptions, config, options, _RENAMED, GROUPS
        )
        self.resource = config.resource
        self.issuer = config.jwt.issuer
        self._http: httpx.AsyncClient | None = config.http_client
        self._owns_http = config.http_client is None
        self._gate = Gate(config, self._client)
        self._auth = self._gate.auth
        self.keys = self._gate.keys

        access = config.access
        default = ScopeRule(
            "/*", access.default_scopes, auth="optional" if access.allow_anonymous else "required"
        )
        public = [ScopeRule(p, auth="public") for p in access.public_paths]
        self.rules = CompiledRules([*public, *access.rules], default)
        meta = config.metadata
        servers = list(meta.authorization_servers or ([self.issuer] if self.issuer else []))
        supported = tuple(dict.fromkeys([*self.rules.scopes_supported, *meta.scopes_supported]))
        dpop = config.dpop
        dpop_algs = dpop.algorithms if dpop is not None else ()
        serve = meta.serve_metadata
        self._metadata_paths = metadata_paths(config.resource) if serve else frozenset()
        self.metadata = metadata_document(
            resource=config.resource,
            authorization_servers=servers,
            scopes_supported=supported,
            dpop_algorithms=dpop_algs,
            dpop_required=dpop is not None and dpop.required,
            resource_name=meta.resource_name,
            resource_documentation=meta.resource_documentation,
        )
        self.challenger = Challenger(
            resource_metadata=metadata_url(config.resource) if serve else None,
            realm=config.realm,
            dpop_algs=dpop_algs,
            dpop_required=dpop is not None and dpop.required,
        )

    def __repr__(self) -> str:
        config = self.config
        kinds = [
            k
            for k, on in (
                ("jwt", self.issuer is not None),
                ("introspection", config.introspection is not None),
                ("api_keys", config.api_keys is not None),
                ("dpop", config.dpop is not None),
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
                send = close_on_shutdown(send, self.aclose, "OAuthMiddleware", logger)
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
        set_challenger(scope, self.challenger)
        try:
            principal = await self._gate.principal(scope, rule)
        except AuthError as error:
            if self.config.dpop is not None and dpop_scheme(scope):
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
        await send_error(send, scope, error.info(), self.challenger.headers(error))


# help(), editors and the docs' options table see every keyword with its type and default
show_options(OAuthMiddleware.__init__, options_signature(OAuthOptions, flat_fields()))
