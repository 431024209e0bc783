"""The app the cross-process tests run under ``uvicorn --workers 4``, configured by env."""

from __future__ import annotations

import os

from aimiddleware.ratelimit import RateLimitMiddleware, Tier

from .apps import SetPrincipal, Upstream

_usage = int(os.environ.get("AIMW_RL_USAGE", "19"))

app = SetPrincipal(
    RateLimitMiddleware(
        Upstream(usage={"prompt_tokens": _usage - 9, "completion_tokens": 9}).app(),
        tiers=[
            Tier("requests", requests="100/minute"),
            Tier("tokens", tokens="1000/minute"),
        ],
        default_tier="requests",
        store=os.environ["AIMW_RL_STORAGE"],
        key_prefix=os.environ["AIMW_RL_PREFIX"],
        timeout=2.0,
        strategy=os.environ.get("AIMW_RL_STRATEGY", "sliding-window"),  # type: ignore[arg-type]
    )
)
