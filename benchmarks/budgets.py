"""The hot-path budgets, defined once: what :mod:`benchmarks.report` judges every run against.

Per request, in process: CPU microseconds a configuration adds over ``bare`` (the figure of
:mod:`benchmarks.inprocess`, its ``added`` column). A budget may be relative to another
configuration's figure: tracing with the OpenTelemetry SDK is allowed 10 us over the SDK's own
cost for the same span and records (``tracing:sdk-floor``), whatever that floor measures.

Per chunk: microseconds a configuration adds to each chunk of a long event stream
(:mod:`benchmarks.stream_cost_stack`, the configuration's name in its output).

Over HTTP: ratios of requests/s, to ``bare`` or to another configuration, in one run.

Redis: round trips per request (a pipeline or a script is one round trip), at most two for each
middleware that uses the store.

Every name here is a configuration of :mod:`benchmarks.registry` (a test checks it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Budget:
    """At most ``us`` microseconds added per request, over ``relative_to``'s own added figure
    when it is set (``tracing:always-on`` may cost the SDK's floor plus 10 us)."""

    name: str
    us: float
    label: str
    relative_to: str | None = None

    def limit(self, added: Mapping[str, float]) -> float | None:
        """The budget in microseconds, given each configuration's added figure; None when it
        is relative to a figure this run does not have."""
        if self.relative_to is None:
            return self.us
        floor = added.get(self.relative_to)
        return None if floor is None else floor + self.us

    def describe(self) -> str:
        """``<= 6`` or ``<= tracing:sdk-floor + 10``."""
        if self.relative_to is None:
            return f"<= {self.us:g}"
        return f"<= `{self.relative_to}` + {self.us:g}"


@dataclass(frozen=True)
class RatioGoal:
    """Requests/s of ``name`` over requests/s of ``over`` (``bare``: its ratio) at least
    ``target``, in one HTTP run."""

    name: str
    target: float
    label: str
    over: str = "bare"


PER_REQUEST: Final = (
    Budget("guard:alone", 4, "RequestGuardMiddleware"),
    Budget("sse:alone", 4, "SSEMiddleware (JSON response passing through)"),
    Budget("normalize:alone", 5, "NormalizeMiddleware (JSON response passing through)"),
    Budget("oauth:api-key", 6, "OAuthMiddleware, API key"),
    Budget("oauth:jwt-rs256", 6, "OAuthMiddleware, a JWT already validated"),
    Budget("idempotency:memory-fresh", 20, "IdempotencyMiddleware, memory, fresh key"),
    Budget("idempotency:memory-replay", 10, "IdempotencyMiddleware, memory, replay"),
    Budget("ratelimit:memory", 15, "RateLimitMiddleware, requests + tokens + concurrency, memory"),
    Budget("tracing:api-only", 10, "TracingMiddleware, its own work (no SDK)"),
    Budget(
        "tracing:always-on",
        10,
        "TracingMiddleware with the SDK, over the SDK's own cost",
        relative_to="tracing:sdk-floor",
    ),
    Budget("stack:memory-no-sdk", 80, "the six together, no SDK"),
)

# stream_cost_stack's configuration name -> microseconds added per chunk
PER_CHUNK: Final = {"stack": 12.0}
PER_CHUNK_LABELS: Final = {"stack": "the six together, per streamed chunk"}

HTTP_GOALS: Final = (
    RatioGoal("stack:memory-no-sdk", 0.55, "the six together without the SDK, req/s vs bare"),
    RatioGoal("stack:memory", 0.30, "full stack on memory, req/s vs bare"),
    RatioGoal("stack:memory", 5.0, "full stack on memory, req/s vs the peer stack", "peer:stack"),
    RatioGoal("stack:redis", 0.40, "full stack on Redis, req/s vs bare"),
)

# configuration -> (middlewares on the store, round trips allowed per request)
ROUND_TRIPS: Final = {
    "idempotency:redis-fresh": ("idempotency: claim, complete", 2),
    "idempotency:redis-replay": ("idempotency: lookup", 2),
    "ratelimit:redis": ("rate limits: acquire, settle", 2),
    "stack:redis": ("both: two each", 4),
}
ROUND_TRIPS_PER_MIDDLEWARE: Final = 2


def budgeted() -> list[str]:
    """Every configuration the in-process budgets name, floors included, in table order."""
    names = [b.name for b in PER_REQUEST]
    names += [b.relative_to for b in PER_REQUEST if b.relative_to and b.relative_to not in names]
    return names
