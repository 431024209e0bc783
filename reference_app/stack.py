"""The middleware stack around the reference app, assembled as a user of the library would.

Order, outermost first (docs/architecture.md says why): RequestGuard, Tracing, Normalize, SSE,
OAuth, Idempotency, RateLimit, then the app. Each wrapper below is applied innermost first.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aimiddleware.guard import RequestGuardMiddleware
from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.normalize import NormalizeMiddleware, NormalizeRoute
from aimiddleware.sse import SSEMiddleware
from aimiddleware.tracing import TracingMiddleware

from .playground import PAGE_PATHS
from .settings import BUNDLED_PRICES, Settings, parse_budgets
from .telemetry import ShutdownTelemetry, Telemetry, setup_telemetry
from .trace_header import TraceIdHeader

ASGIApp = Any

# what an agent that sends `Prefer: return=minimal` gets back: the answer and its cost
MINIMAL_CHAT = ["id", "model", "choices.message.content", "choices.finish_reason", "usage"]
MINIMAL_COMPLETION = ["id", "model", "choices.text", "choices.finish_reason", "usage"]
MINIMAL_RESPONSE = [
    "id",
    "model",
    "status",
    "incomplete_details",
    "output.type",
    "output.content.text",
    "output.call_id",
    "output.name",
    "output.arguments",
    "usage",
]


def _rate_limits(app: ASGIApp, settings: Settings) -> ASGIApp:
    from aimiddleware.ratelimit import PriceTable, RateLimitMiddleware, Tier

    def budgets(own: str | None, shared: str | None) -> list[Any]:
        return [
            *(parse_budgets(own, "caller") if own else ()),
            *(parse_budgets(shared, "tier") if shared else ()),
        ]

    tiers = [
        Tier(
            "agent",
            requests=settings.agent_requests,
            tokens=settings.agent_tokens,
            concurrency=settings.agent_concurrency,
            budgets=budgets(settings.agent_budget, settings.agent_tier_budget),
        ),
        Tier(
            "human",
            requests=settings.human_requests,
            tokens=settings.human_tokens,
            concurrency=settings.human_concurrency,
            budgets=budgets(settings.human_budget, settings.human_tier_budget),
        ),
    ]
    priced = any(tier.budgets for tier in tiers)
    return RateLimitMiddleware(
        app,
        tiers=tiers,
        default_tier=settings.anonymous_tier,
        store=settings.store_url,
        timeout=settings.store_timeout,
        on_store_error=settings.rate_limit_on_store_error,
        client_type_header=settings.client_type_header,
        client_type_trusted_from=settings.client_type_trusted_from,
        trusted_proxies=settings.trusted_proxies,
        prices=PriceTable.from_file(settings.prices or BUNDLED_PRICES) if priced else None,
        budget_alerts=settings.budget_alerts,
        # loading the playground (page, assets, demo token) costs no budget; its chats do
        exempt_paths=["/health", *PAGE_PATHS],
    )


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
    # Innermost first: rate limiting, then idempotency (a replay never reaches the limiter),
    # both keyed on the principal that OAuth establishes outside them; SSE outside OAuth (its
    # heartbeats are never recorded), normalisation outside every middleware that answers with
    # an error, tracing outside them, the request guard outermost (docs/architecture.md).
    if settings.rate_limits:
        app = _rate_limits(app, settings)
    app = IdempotencyMiddleware(
        app,
        store=settings.store_url,
        paths=["/v1/*"],
        principal_resolver=credential_tenant,
        on_store_error=settings.idempotency_on_store_error,
    )
    if settings.auth:
        from .auth import oauth_middleware

        app = oauth_middleware(app, settings)
    # /mcp's Origin check answers before auth: a foreign page gets 403 with or without a token
    from .mcp_server import origin_guard

    app = origin_guard(app, settings)
    app = SSEMiddleware(app, heartbeat=settings.sse_heartbeat)
    app = NormalizeMiddleware(
        app,
        routes=[
            # a health document, not an error: load balancers read its 503 body as it is
            NormalizeRoute("/health", format="passthrough"),
            NormalizeRoute("/v1/chat/completions", minimal=MINIMAL_CHAT),
            NormalizeRoute("/v1/completions", minimal=MINIMAL_COMPLETION),
            NormalizeRoute("/v1/responses", minimal=MINIMAL_RESPONSE),
        ],
    )
    telemetry = telemetry if telemetry is not None else setup_telemetry()
    # the trace id on the response, for the playground and for bug reports (it reads the id
    # the tracing middleware puts in the scope, so it sits directly inside it)
    app = TraceIdHeader(app)
    app = TracingMiddleware(
        app,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        excluded_urls=telemetry.excluded_urls,
        access_log=settings.access_log,
    )
    # the guard is outermost: tracing reads chat bodies before anything inside it runs, and
    # an oversized or trickled body must be refused before that read (docs/guard.md)
    app = RequestGuardMiddleware(
        app,
        max_request_bytes=settings.max_request_body,
        body_timeout=settings.request_body_timeout,
        max_header_bytes=settings.max_request_headers,
    )
    return ShutdownTelemetry(app, telemetry=telemetry)
