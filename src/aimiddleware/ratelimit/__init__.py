"""Agent-tier rate limits: requests, LLM tokens and concurrent requests per caller.

Needs the ``ratelimit`` extra (``pip install 'aimiddleware[ratelimit]'``; add ``redis`` for
shared storage)::

    from aimiddleware.ratelimit import RateLimitMiddleware, Tier

    app = RateLimitMiddleware(
        app,
        tiers=[Tier("agent", requests="600/minute", tokens="200000/minute", concurrency=8),
               Tier("human", requests="60/minute", tokens="40000/minute", concurrency=2)],
        default_tier="human",
        store="redis://127.0.0.1:6379/0",
    )

Spend budgets (currency per caller or per tier, per UTC day or month) take a price table::

    Tier("agent", tokens="200000/minute", budgets=[Budget("5.00", "day")])
    prices = PriceTable({"gpt-4o-mini": Price(input="0.15", output="0.60")})
    RateLimitMiddleware(app, tiers=[...], prices=prices)

The options are one frozen object, :class:`RateLimitOptions` (with the groups
:class:`CallerOptions` and :class:`TokenEstimates`), given as keywords or as ``config``.
"""

from __future__ import annotations

from ._budgets import Budget, Price, PriceTable
from ._options import CallerOptions, OverrideProvider, RateLimitOptions, TokenEstimates
from ._tiers import ModelLimits, Strategy, Tier, Window
from .middleware import RateLimitMiddleware

__all__ = [
    "Budget",
    "CallerOptions",
    "ModelLimits",
    "OverrideProvider",
    "Price",
    "PriceTable",
    "RateLimitMiddleware",
    "RateLimitOptions",
    "Strategy",
    "Tier",
    "TokenEstimates",
    "Window",
]
