"""Agent-tier rate limits: requests, LLM tokens and concurrent requests per caller.

Needs the ``ratelimit`` extra (``pip install 'aimiddleware[ratelimit]'``; add ``redis`` for
shared storage)::

    from aimiddleware.ratelimit import RateLimitMiddleware, Tier

    app = RateLimitMiddleware(
        app,
        tiers=[Tier("agent", requests="600/minute", tokens="200000/minute", concurrency=8),
               Tier("human", requests="60/minute", tokens="40000/minute", concurrency=2)],
        default_tier="human",
        storage="redis://127.0.0.1:6379/0",
    )
"""

from __future__ import annotations

from ._options import ModelLimits, Strategy, Tier, Window
from .middleware import OverrideProvider, RateLimitMiddleware

__all__ = ["ModelLimits", "OverrideProvider", "RateLimitMiddleware", "Strategy", "Tier", "Window"]
