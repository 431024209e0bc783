"""The middleware stack around the reference app, assembled as a user of the library would.

Order, outermost first (docs/architecture.md says why): Tracing, Normalize, SSE, OAuth,
Idempotency, RateLimit, then the app. Each wrapper below is applied innermost first.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.normalize import NormalizeMiddleware, NormalizeRoute
from aimiddleware.sse import SSEMiddleware
from aimiddleware.tracing import TracingMiddleware

from .settings import Settings
from .telemetry import ShutdownTelemetry, Telemetry, setup_telemetry

ASGIApp = Any

# what an agent that sends `Prefer: return=minimal` gets back: the answer and its cost
MINIMAL_CHAT = ["id", "model", "choices.message.content", "choices.finish_reason", "usage"]
MINIMAL_COMPLETION = ["id", "model", "choices.text", "choices.finish_reason", "usage"]


def credential_tenant(scope: Any) -> str | None:
    """Without an auth middleware's principal: callers are told apart by their credential.

    The openai SDK always sends ``Authorization: Bearer <api key>``; only a hash of it is kept,
    so records of one key are never served to another. With ``auth`` on, the principal that
    OAuth establishes takes precedence.
    """
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and value:
            return "cred:" + hashlib.sha256(value).hexdigest()[:32]
    return None


def build_stack(app: ASGIApp, settings: Settings, telemetry: Telemetry | None = None) -> ASGIApp:
    """Wrap ``app`` in the library's middlewares, configured from ``settings``.

    ``telemetry``: where spans and metrics go; by default from the ``OTEL_*`` environment
    (see reference_app/telemetry.py), and nowhere when no OTLP endpoint is set.
    """
    # innermost first: rate limiting goes above idempotency; both key on the principal that
    # OAuth establishes; SSE and normalisation go below OAuth, tracing outermost
    app = IdempotencyMiddleware(
        app,
        store=settings.store_url,
        paths=["/v1/*"],
        principal_resolver=credential_tenant,
    )
    if settings.auth:
        from .auth import oauth_middleware

        app = oauth_middleware(app, settings)
    app = SSEMiddleware(app, heartbeat=settings.sse_heartbeat)
    app = NormalizeMiddleware(
        app,
        routes=[
            # a health document, not an error: load balancers read its 503 body as it is
            NormalizeRoute("/health", format="passthrough"),
            NormalizeRoute("/v1/chat/completions", minimal=MINIMAL_CHAT),
            NormalizeRoute("/v1/completions", minimal=MINIMAL_COMPLETION),
        ],
    )
    telemetry = telemetry if telemetry is not None else setup_telemetry()
    app = TracingMiddleware(
        app,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        excluded_urls=telemetry.excluded_urls,
        access_log=settings.access_log,
    )
    return ShutdownTelemetry(app, telemetry=telemetry)
