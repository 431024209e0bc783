"""Budget alerts: a log event and an OpenTelemetry counter when a budget crosses a threshold.

The engines report each threshold of ``budget_alerts`` once per budget and period, across
workers (the budget's record remembers what was reported), as a settlement brings its total
to that share of the budget. The counter ``aimiddleware.ratelimit.budget.alerts`` has the
attributes ``tier``, ``budget`` and ``threshold`` (never the caller: one series per caller
would have no bound); the log line names the caller.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..context import Scope, annotate
from ._budgets import Budget

if TYPE_CHECKING:
    from ._plan import Ticket

__all__ = ["report_alert"]

logger = logging.getLogger("aimiddleware.ratelimit")

_counter: Any = None


def _alerts_counter() -> Any:
    global _counter
    if _counter is None:
        try:
            from opentelemetry import metrics
        except ImportError:
            _counter = False
        else:
            _counter = metrics.get_meter("aimiddleware").create_counter(
                "aimiddleware.ratelimit.budget.alerts",
                unit="{alert}",
                description="Spend budgets that reached an alert threshold this period",
            )
    return _counter


def report_alert(
    scope: Scope, budget: Budget, threshold: float, ticket: Ticket, currency: str
) -> None:
    """Log, count and annotate one budget reaching ``threshold`` (a fraction) of itself."""
    tier = ticket.plan.tier
    who = f"tier {tier!r}" if budget.per == "tier" else f"caller {ticket.subject!r} (tier {tier!r})"
    logger.warning(
        "spend budget: %s reached %d%% of its %s budget of %s %s",
        who,
        round(threshold * 100),
        budget.period,
        budget.amount,
        currency,
    )
    annotate(scope, "aimiddleware.ratelimit.budget_alert", f"{budget.name}:{threshold:g}")
    counter = _alerts_counter()
    if counter:
        counter.add(1, {"tier": tier, "budget": budget.name, "threshold": threshold})
