"""What a request is counted for: the tier's template for its kind, and its ticket.

Per request only the counting key and the token estimate change; key suffixes, header names
and the ``RateLimit-Policy`` value are computed the first time a tier meets a kind of request
(with or without tokens, with or without a model of its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple

from .._openai import LLMRequest
from ._engine import Check, Decision, Outcome, Slot
from ._headers import reset_duration
from ._identity import hash_tag
from ._tiers import Tier, Window

if TYPE_CHECKING:
    from ._options import RateLimitOptions

__all__ = ["LLMCall", "Template", "Ticket", "template_for", "ticket_for"]

# the template of a tier for requests that are not LLM calls
_PLAIN: Final = (None, False)


def _clean(text: str) -> str:
    # a structured-field string: printable ASCII without quote and backslash
    return "".join(c for c in text if 0x20 <= ord(c) < 0x7F and c not in '"\\')


@dataclass(frozen=True, slots=True)
class Template:
    kinds: tuple[str, ...]
    names: tuple[str, ...]
    suffixes: tuple[str, ...]
    windows: tuple[Window, ...]
    token_positions: tuple[int, ...]
    first: tuple[tuple[str, int], ...]  # (kind, position) of the shortest requests/tokens window
    # (annotation name, position): what is left of the shortest requests/tokens window
    remaining: tuple[tuple[str, int], ...]
    concurrency: int | None
    policy: bytes
    # (suffix, limit, window seconds, is tokens) per check: what checks() needs, flat
    _specs: tuple[tuple[str, int, int, bool], ...]
    # the fields that never change: RateLimit-Policy and x-ratelimit-limit-*
    _static: tuple[tuple[bytes, bytes], ...]
    # the RateLimit value with %d for each number: '"name";r=%d;t=%d, ...'
    _state_format: bytes
    # (position, x-ratelimit-remaining-<kind>, x-ratelimit-reset-<kind>) per first window
    _openai: tuple[tuple[int, bytes, bytes], ...]

    def checks(self, base: str, estimate: int) -> list[Check]:
        return [
            Check(base + suffix, limit, seconds, estimate if tokens else 1)
            for suffix, limit, seconds, tokens in self._specs
        ]

    def fields(self, outcomes: Sequence[Outcome], slots_free: int) -> list[tuple[bytes, bytes]]:
        """``RateLimit-Policy``, ``RateLimit`` and OpenAI's ``x-ratelimit-*`` for one response.

        Only the numbers are written per response: names, limits and the policy are the
        tier's, formatted once (``_static``, ``_state_format``).
        """
        values: list[int] = []
        for outcome in outcomes:
            ms = outcome.reset_ms
            values.append(outcome.remaining)
            values.append((ms + 999) // 1000 if ms > 0 else 0)
        if self.concurrency is not None:
            values.append(slots_free)
        fields = [*self._static, (b"ratelimit", self._state_format % tuple(values))]
        for position, remaining_name, reset_name in self._openai:
            outcome = outcomes[position]
            fields.append((remaining_name, b"%d" % outcome.remaining))
            fields.append((reset_name, reset_duration(outcome.reset_ms)))
        return fields


def template_for(tier: Tier, model: str | None, tokens: bool) -> Template:
    """The template of ``tier`` for a request (``model``: its model; ``tokens``: an LLM call)."""
    extra = tier.models.get(model) if model is not None else None
    key = (model if extra is not None else None, tokens)
    cached: Template | None = tier._templates.get(key)
    if cached is not None:
        return cached
    kinds: list[str] = []
    names: list[str] = []
    suffixes: list[str] = []
    windows: list[Window] = []
    groups: list[tuple[str, tuple[Window, ...], str | None]] = [("requests", tier.requests, None)]
    if tokens:
        groups.append(("tokens", tier.tokens, None))
    if extra is not None and model is not None:
        groups.append(("requests", extra.requests, model))
        if tokens:
            groups.append(("tokens", extra.tokens, model))
    for kind, group, scoped in groups:
        base = kind if scoped is None else f"{_clean(scoped)}:{kind}"
        for window in group:
            kinds.append(kind)
            names.append(base if len(group) == 1 else f"{base}-{window.seconds}s")
            prefix = "" if scoped is None else f"m:{hash_tag(scoped)}:"
            suffixes.append(f"{prefix}{kind}:{window.seconds}")
            windows.append(window)
    # "qu" takes only registered units (requests, content-bytes, concurrent-requests): a token
    # quota says its unit in its policy name ("tokens", "<model>:tokens") and in OpenAI's
    # x-ratelimit-*-tokens fields instead
    policies = [
        f'"{name}";q={window.amount};w={window.seconds}'
        for name, window in zip(names, windows, strict=True)
    ]
    if tier.concurrency is not None:
        policies.append(f'"concurrency";q={tier.concurrency};qu="concurrent-requests"')
    policy = ", ".join(policies).encode("ascii")
    states = [f'"{name.replace("%", "%%")}";r=%d;t=%d' for name in names]
    if tier.concurrency is not None:
        states.append('"concurrency";r=%d')
    first = tuple((kind, kinds.index(kind)) for kind in ("requests", "tokens") if kind in kinds)
    template = Template(
        kinds=tuple(kinds),
        names=tuple(names),
        suffixes=tuple(suffixes),
        windows=tuple(windows),
        token_positions=tuple(i for i, k in enumerate(kinds) if k == "tokens"),
        first=first,
        remaining=tuple((f"aimiddleware.ratelimit.remaining_{k}", p) for k, p in first),
        concurrency=tier.concurrency,
        policy=policy,
        _specs=tuple(
            (suffix, w.amount, w.seconds, kind == "tokens")
            for kind, suffix, w in zip(kinds, suffixes, windows, strict=True)
        ),
        _static=(
            (b"ratelimit-policy", policy),
            *(
                (f"x-ratelimit-limit-{kind}".encode(), b"%d" % windows[position].amount)
                for kind, position in first
            ),
        ),
        _state_format=", ".join(states).encode("ascii"),
        _openai=tuple(
            (
                position,
                f"x-ratelimit-remaining-{kind}".encode(),
                f"x-ratelimit-reset-{kind}".encode(),
            )
            for kind, position in first
        ),
    )
    tier._templates[key] = template
    return template


class LLMCall(NamedTuple):
    """An LLM request to count tokens for, and whether the middleware itself asked for the
    usage event of its stream (so that event is taken out again on the way back)."""

    request: LLMRequest
    strip_usage: bool


@dataclass(slots=True)
class Ticket:
    """One request's counting: built before the check, read again when the response settles.

    ``token`` tells this request's slot lease and moving-window entries apart from every
    other's; it is given only where one is needed (see ``Counter.acquire``).
    """

    plan: Template
    checks: list[Check]
    slot: Slot | None
    llm: LLMRequest | None
    strip_usage: bool
    estimate: int  # tokens reserved (0 when the request is not an LLM call)
    prompt: int  # of which the prompt's
    token: str = ""

    def slots_free(self, decision: Decision) -> int:
        """Concurrency slots left after ``decision`` (0 without a concurrency limit)."""
        slot = self.slot
        return max(0, slot.limit - decision.slots_in_use) if slot is not None else 0


def ticket_for(
    config: RateLimitOptions, base: str, tier: Tier, call: LLMCall | None
) -> Ticket | None:
    """What a request of the caller with key prefix ``base`` is counted for under ``tier``;
    ``None`` when no limit of the tier applies to it."""
    if call is None:
        plan = tier._templates.get(_PLAIN) or template_for(tier, None, False)
        llm, strip, estimate, prompt = None, False, 0, 0
    else:
        llm, strip = call
        plan = template_for(tier, llm.model, True)
        estimates = config.token_estimates
        prompt = estimates.prompt_tokens(llm.prompt_chars)
        estimate = estimates.reservation(prompt, llm.max_tokens, llm.choices)
    checks = plan.checks(base, estimate)
    concurrency = tier.concurrency
    slot = Slot(base + "slots", concurrency, config.concurrency_lease) if concurrency else None
    if not checks and slot is None:
        return None
    return Ticket(plan, checks, slot, llm, strip, estimate, prompt)
