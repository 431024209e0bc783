"""The middleware stack around the reference app, assembled as a user of the library would.

Order, outermost first (docs/architecture.md says why): Tracing, Normalize, SSE, OAuth,
Idempotency, RateLimit, then the app. Each wrapper below is applied innermost first.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aimiddleware._asgi import Scope, get_header
from aimiddleware.idempotency import IdempotencyMiddleware

from .settings import Settings

ASGIApp = Any


def credential_tenant(scope: Scope) -> str | None:
    """Until an auth middleware sets a principal: callers are told apart by their credential.

    The openai SDK always sends ``Authorization: Bearer <api key>``; only a hash of it is kept,
    so records of one key are never served to another.
    """
    raw = get_header(scope.get("headers", ()), b"authorization")
    if not raw:
        return None
    return "cred:" + hashlib.sha256(raw).hexdigest()[:32]


def build_stack(app: ASGIApp, settings: Settings) -> ASGIApp:
    """Wrap ``app`` in the library's middlewares, configured from ``settings``."""
    app = IdempotencyMiddleware(
        app,
        store=settings.store_url,
        paths=["/v1/*"],
        principal_resolver=credential_tenant,
    )
    return app
