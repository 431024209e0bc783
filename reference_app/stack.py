"""The middleware stack around the reference app, assembled as a user of the library would.

Order, outermost first (docs/architecture.md says why): Tracing, Normalize, SSE, OAuth,
Idempotency, RateLimit, then the app. Each wrapper below is applied innermost first.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aimiddleware.idempotency import IdempotencyMiddleware

from .settings import Settings

ASGIApp = Any


def credential_tenant(scope: Any) -> str | None:
    """Until an auth middleware sets a principal: callers are told apart by their credential.

    The openai SDK always sends ``Authorization: Bearer <api key>``; only a hash of it is kept,
    so records of one key are never served to another.
    """
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and value:
            return "cred:" + hashlib.sha256(value).hexdigest()[:32]
    return None


def build_stack(app: ASGIApp, settings: Settings) -> ASGIApp:
    """Wrap ``app`` in the library's middlewares, configured from ``settings``."""
    app = IdempotencyMiddleware(
        app,
        store=settings.store_url,
        paths=["/v1/*"],
        principal_resolver=credential_tenant,
    )
    return app
