"""The middleware stack around the reference app, assembled as a user of the library would.

Order, outermost first (docs/architecture.md says why): Tracing, Normalize, SSE, OAuth,
Idempotency, RateLimit, then the app. Each wrapper below is applied innermost first.
"""

from __future__ import annotations

from typing import Any

from .settings import Settings

ASGIApp = Any


def build_stack(app: ASGIApp, settings: Settings) -> ASGIApp:
    """Wrap ``app`` in the library's middlewares, configured from ``settings``."""
    # innermost first: idempotency and rate limiting go above this line (they key on the
    # principal that OAuth establishes), SSE, normalisation and tracing below it
    if settings.auth:
        from .auth import oauth_middleware

        app = oauth_middleware(app, settings)
    return app
