"""An OAuth 2.1 resource server for ASGI: JWT access tokens, introspection, API keys, DPoP.

Needs the ``oauth`` extra (``pip install 'aimiddleware[oauth]'``: joserfc and httpx)::

    from aimiddleware.oauth import APIKeys, OAuthMiddleware, ScopeRule

    app.add_middleware(
        OAuthMiddleware,
        resource="https://api.example.com",
        issuer="https://auth.example.com",
        rules=[ScopeRule("/v1/chat/completions", ["chat"], methods=["POST"])],
        public_paths=["/health"],
    )

The options are keywords, or one :class:`OAuthOptions` (grouped: :class:`JWTOptions`,
:class:`AccessOptions`, :class:`ClaimOptions`, :class:`MetadataOptions`) passed as ``config``.
See docs/oauth.md for every option, the response shapes and the challenges.
"""

from __future__ import annotations

try:
    import httpx as _httpx  # noqa: F401
    import joserfc as _joserfc  # noqa: F401
except ImportError as exc:  # pragma: no cover (the dev environment has every extra)
    raise ImportError(
        f"aimiddleware.oauth needs the oauth extra ({exc.name} is missing): "
        "pip install 'aimiddleware[oauth]'"
    ) from exc

from ._apikeys import APIKey, APIKeys
from ._dpop import DPoP
from ._fastapi import OAuthHTTPException, RequireScopes, oauth_exception_handler, requires_scopes
from ._introspection import Introspection
from ._options import AccessOptions, ClaimOptions, JWTOptions, MetadataOptions, OAuthOptions
from ._rules import ScopeRule
from .middleware import OAuthMiddleware

__all__ = [
    "APIKey",
    "APIKeys",
    "AccessOptions",
    "ClaimOptions",
    "DPoP",
    "Introspection",
    "JWTOptions",
    "MetadataOptions",
    "OAuthHTTPException",
    "OAuthMiddleware",
    "OAuthOptions",
    "RequireScopes",
    "ScopeRule",
    "oauth_exception_handler",
    "requires_scopes",
]
