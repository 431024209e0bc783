"""The middleware stack around the reference app, assembled as a user of the library would.

Order, outermost first (docs/architecture.md says why): Tracing, Normalize, SSE, OAuth,
Idempotency, RateLimit, then the app. Each wrapper below is applied innermost first.
"""

from __future__ import annotations

from typing import Any

from aimiddleware.normalize import NormalizeMiddleware, NormalizeRoute
from aimiddleware.sse import SSEMiddleware

from .settings import Settings

ASGIApp = Any

# what an agent that sends `Prefer: return=minimal` gets back: the answer and its cost
MINIMAL_CHAT = ["id", "model", "choices.message.content", "choices.finish_reason", "usage"]
MINIMAL_COMPLETION = ["id", "model", "choices.text", "choices.finish_reason", "usage"]


def build_stack(app: ASGIApp, settings: Settings) -> ASGIApp:
    """Wrap ``app`` in the library's middlewares, configured from ``settings``."""
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
    return app
