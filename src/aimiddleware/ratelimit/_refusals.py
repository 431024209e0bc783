"""The middleware's own answers: 429 when a limit rejects, 413, and 503 when the store is down.

Each is an ``aimiddleware.errors.ErrorInfo`` sent with ``send_error``, so it has the shape of
every other error of the stack (the OpenAI envelope, or problem details where the route or
``Accept`` asks for them). The 429's ``type`` names the limit that rejected
(``requests``, ``tokens`` or ``concurrency``), as OpenAI's does.
"""

from __future__ import annotations

import math

from ..context import Scope, Send, annotate
from ..errors import ErrorInfo, send_error
from ._budgets import format_money
from ._engine import Decision
from ._headers import go_duration
from ._plan import Ticket

__all__ = [
    "send_budget_refusal",
    "send_rejection",
    "send_too_large",
    "send_unavailable",
    "send_unpriced",
]


def whole_seconds(seconds: float) -> int:
    """Retry-After is whole seconds, at least 1: rounded up, never earlier than the real wait."""
    return max(1, math.ceil(seconds))


async def send_rejection(
    scope: Scope, send: Send, ticket: Ticket, decision: Decision, currency: str = ""
) -> None:
    """The 429 of a request ``decision`` refused, with ``Retry-After`` and the limit fields
    (``currency``: the price table's, named by a budget's refusal)."""
    plan, checks, failed = ticket.plan, ticket.checks, decision.failed
    outcomes = decision.outcomes
    if failed < len(checks) and plan.kinds[failed] == "budget":
        await send_budget_refusal(scope, send, ticket, decision, currency)
        return
    if failed >= len(checks):
        assert ticket.slot is not None  # the slot is the check after the windows
        kind, retry = "concurrency", 1.0
        message = (
            f"Rate limit reached on concurrent requests: limit {ticket.slot.limit} in flight. "
            "Please try again when one of your requests has finished."
        )
    else:
        check, kind, outcome = checks[failed], plan.kinds[failed], outcomes[failed]
        retry = max(outcome.retry_ms, 1) / 1000
        # the exhausted policy's reset (RateLimit t, x-ratelimit-reset-*) names the moment
        # Retry-After names, in the same whole seconds
        outcomes = list(outcomes)
        outcomes[failed] = outcome._replace(reset_ms=whole_seconds(retry) * 1000)
        per = f"{kind} per {go_duration(check.window)} ({plan.names[failed]})"
        if check.cost > check.limit:
            message = f"Request too large for {per}: limit {check.limit}, requested {check.cost}."
        else:
            message = (
                f"Rate limit reached on {per}: limit {check.limit}, remaining "
                f"{outcome.remaining}, requested {check.cost}. "
                f"Please try again in {go_duration(retry)}."
            )
    annotate(scope, "aimiddleware.ratelimit.limited", kind)
    # a request larger than a whole window never fits, whichever limit refused it first:
    # waiting cannot help (x-should-retry: false)
    fits = all(check.cost <= check.limit for check in checks)
    info = ErrorInfo(
        429, message, kind, code="rate_limit_exceeded", retry_after=retry, should_retry=fits
    )
    fields = plan.fields(outcomes, ticket.slots_free(decision))
    await send_error(send, scope, info, fields)


async def send_budget_refusal(
    scope: Scope, send: Send, ticket: Ticket, decision: Decision, currency: str
) -> None:
    """The 429 ``insufficient_quota`` of a request a spend budget refused.

    Waiting seconds cannot help (the budget renews when its calendar period ends), so
    ``x-should-retry`` is false; ``Retry-After`` still says when it renews.
    """
    plan, failed = ticket.plan, decision.failed
    check, outcome = ticket.checks[failed], decision.outcomes[failed]
    budget = plan.budgets[plan.budget_positions.index(failed)]
    seconds = max(outcome.retry_ms, outcome.reset_ms, 1) / 1000
    whose = "this tier's" if budget.per == "tier" else "your"
    message = (
        f"You exceeded {whose} {budget.period} spend budget of {budget.amount} {currency}: "
        f"{format_money(outcome.remaining)} {currency} remains and this request may cost up "
        f"to {format_money(check.cost)} {currency}. The budget renews in "
        f"{go_duration(seconds)} (at the start of the next UTC {budget.period})."
    )
    annotate(scope, "aimiddleware.ratelimit.limited", "budget")
    info = ErrorInfo(
        429,
        message,
        "insufficient_quota",
        code="insufficient_quota",
        retry_after=seconds,
        should_retry=False,
    )
    await send_error(send, scope, info, plan.fields(decision.outcomes, ticket.slots_free(decision)))


async def send_unpriced(scope: Scope, send: Send, model: str | None) -> None:
    """The 400 of a request whose model has no price where a spend budget applies."""
    annotate(scope, "aimiddleware.ratelimit.outcome", "model_not_priced")
    named = f"The model {model!r}" if model is not None else "A request without a model"
    message = (
        f"{named} has no price on this server, and spend budgets apply to your requests: "
        "use a model the server prices."
    )
    info = ErrorInfo(400, message, "invalid_request_error", param="model", code="model_not_priced")
    await send_error(send, scope, info)


async def send_too_large(scope: Scope, send: Send, limit: int) -> None:
    """The 413 of an LLM request whose body is over ``limit`` bytes."""
    annotate(scope, "aimiddleware.ratelimit.outcome", "body_too_large")
    message = f"The request body is larger than {limit} bytes."
    info = ErrorInfo(413, message, "invalid_request_error", code="request_too_large")
    await send_error(send, scope, info)


async def send_unavailable(scope: Scope, send: Send) -> None:
    """The 503 of a request the store could not count, with ``on_store_error="closed"``."""
    message = "The rate limiter is unavailable; please try again shortly."
    info = ErrorInfo(
        503,
        message,
        "server_error",
        code="rate_limiter_unavailable",
        retry_after=1,
        should_retry=True,
    )
    await send_error(send, scope, info)
