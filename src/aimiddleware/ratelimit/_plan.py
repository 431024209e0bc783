"""What a request is counted for: the tier's template for its kind, and its ticket.

Per request only the token estimate and the numbers of the fields change. Header names, the
``RateLimit-Policy`` value and the format of ``RateLimit`` are computed the first time a tier
meets a kind of request (with or without tokens, with or without a model of its own); the
counting keys and the slot the first time a caller meets a template (:class:`Plans`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple

from .._lru import LRUCache
from .._openai import LLMRequest
from ._budgets import Budget, Price, UnpricedModelError, budget_fields, budget_specs, format_money
from ._engine import Check, Decision, Outcome, Slot, new_check
from ._headers import reset_duration
from ._identity import hash_tag
from ._tiers import Tier, Window

if TYPE_CHECKING:
    from ._options import RateLimitOptions

__all__ = ["Plans", "Template", "Ticket", "template_for"]

# the template keys of a tier without per-model limits: plain requests and LLM calls
_PLAIN: Final = (None, False)
_LLM: Final = (None, True)
# a caller's keys are remembered for this many recent callers (then built again)
_MAX_CALLERS: Final = 16384
# templates remembered per caller (an override provider may hand out new tiers each time)
_MAX_BOUND: Final = 8


def _clean(text: str) -> str:
    # a structured-field string: printable ASCII without quote and backslash
    return "".join(c for c in text if 0x20 <= ord(c) < 0x7F and c not in '"\\')


class Binding(NamedTuple):
    """A template bound to one caller: its checks (token costs filled in per request) and slot."""

    checks: tuple[Check, ...]
    slot: Slot | None


# identity equality and hash: a template is a dict key per caller, built once per tier and kind
@dataclass(frozen=True, slots=True, eq=False)
class Template:
    tier: str
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
    # positions of the budgets (after every window check), and where the tier-wide ones start
    budget_positions: tuple[int, ...]
    shared_from: int
    budgets: tuple[Budget, ...]
    # (key suffix, limit, window seconds, cost, period, tier-wide) per check: what bind() needs
    _specs: tuple[tuple[str, int, int, int, int, bool], ...]
    # the fields that never change: RateLimit-Policy and x-ratelimit-limit-*
    _static: tuple[tuple[bytes, bytes], ...]
    # the RateLimit value with %d for each number: '"name";r=%d;t=%d, ...'
    _state_format: bytes
    # checks over windows (the budgets come after them, outside the RateLimit fields)
    _window_count: int
    # (position, x-ratelimit-remaining-<kind>, x-ratelimit-reset-<kind>) per first window
    _openai: tuple[tuple[int, bytes, bytes], ...]

    def bind(self, prefix: str, base: str, lease: float) -> Binding:
        """The checks and slot of the caller whose keys start with ``base`` (token and budget
        checks cost 0 here: the request's estimate replaces it); a tier-wide budget's key
        starts with ``prefix`` alone."""
        checks = tuple(
            Check((prefix if shared else base) + suffix, limit, seconds, cost, period)
            for suffix, limit, seconds, cost, period, shared in self._specs
        )
        concurrency = self.concurrency
        return Binding(checks, Slot(base + "slots", concurrency, lease) if concurrency else None)

    def fields(self, outcomes: Sequence[Outcome], slots_free: int) -> list[tuple[bytes, bytes]]:
        """``RateLimit-Policy``, ``RateLimit`` and OpenAI's ``x-ratelimit-*`` for one response.

        Only the numbers are written per response: names, limits and the policy are the
        tier's, formatted once (``_static``, ``_state_format``).
        """
        values: list[int] = []
        for remaining, ms, _, _ in outcomes[: self._window_count]:
            values.append(remaining)
            values.append((ms + 999) // 1000 if ms > 0 else 0)
        if self.concurrency is not None:
            values.append(slots_free)
        fields = [*self._static, (b"ratelimit", self._state_format % tuple(values))]
        if self.budgets:
            fields += budget_fields(self.budget_positions, self.budgets, outcomes)
        reset_ms, reset = -1, b""
        for position, remaining_name, reset_name in self._openai:
            remaining, ms, _, _ = outcomes[position]
            if ms != reset_ms:  # the requests and tokens windows often reset together
                reset_ms, reset = ms, reset_duration(ms)
            fields.append((remaining_name, b"%d" % remaining))
            fields.append((reset_name, reset))
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
    window_count = len(kinds)
    # a caller's budgets, then the tier's (their own script on Redis Cluster: another hash tag)
    budgets = tuple(sorted(tier.budgets if tokens else (), key=lambda b: b.per == "tier"))
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
        tier=tier.name,
        kinds=(*kinds, *("budget" for _ in budgets)),
        names=(*names, *(b.name for b in budgets)),
        suffixes=tuple(suffixes),
        windows=tuple(windows),
        token_positions=tuple(i for i, k in enumerate(kinds) if k == "tokens"),
        first=first,
        remaining=tuple((f"aimiddleware.ratelimit.remaining_{k}", p) for k, p in first),
        concurrency=tier.concurrency,
        policy=policy,
        budget_positions=tuple(range(window_count, window_count + len(budgets))),
        shared_from=window_count + sum(1 for b in budgets if b.per == "caller"),
        budgets=budgets,
        _specs=(
            *(
                (suffix, w.amount, w.seconds, 0 if kind == "tokens" else 1, 0, False)
                for kind, suffix, w in zip(kinds, suffixes, windows, strict=True)
            ),
            *budget_specs(hash_tag(tier.name), budgets),
        ),
        _static=(
            (b"ratelimit-policy", policy),
            *(
                (f"x-ratelimit-limit-{kind}".encode(), b"%d" % windows[position].amount)
                for kind, position in first
            ),
            *(
                (f"x-budget-limit-{b.name}".encode(), format_money(b.nano).encode())
                for b in budgets
            ),
        ),
        _state_format=", ".join(states).encode("ascii"),
        _window_count=window_count,
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


@dataclass(slots=True)
class Ticket:
    """One request's counting: built before the check, read again when the response settles.

    ``token`` tells this request's slot lease and moving-window entries apart from every
    other's; it is given only where one is needed (see ``Counter.acquire``).
    """

    plan: Template
    checks: Sequence[Check]
    slot: Slot | None
    llm: LLMRequest | None
    strip_usage: bool
    estimate: int  # tokens reserved (0 when the request is not an LLM call)
    prompt: int  # of which the prompt's
    token: str = ""
    price: Price | None = None  # the model's, where a budget applies
    subject: str = ""  # who is counted, where a budget applies (its alerts name them)

    def slots_free(self, decision: Decision) -> int:
        """Concurrency slots left after ``decision`` (0 without a concurrency limit)."""
        slot = self.slot
        return max(0, slot.limit - decision.slots_in_use) if slot is not None else 0


class Plans:
    """The tickets of one middleware's requests, from templates bound once per caller.

    A caller's key prefix (one Redis Cluster hash tag per caller), its counting keys and its
    slot are built the first time it meets a template and kept for the most recent callers.
    """

    __slots__ = ("_bound", "_estimates", "_lease", "_prefix", "_prices")

    def __init__(self, config: RateLimitOptions) -> None:
        self._prefix = config.key_prefix
        self._prices = config.prices
        self._lease = config.concurrency_lease
        self._estimates = config.token_estimates
        self._bound: LRUCache[str, dict[Template, Binding]] = LRUCache(
            "rate limit key prefixes", _MAX_CALLERS
        )

    def ticket(
        self, subject: str, tier: Tier, llm: LLMRequest | None, strip_usage: bool = False
    ) -> Ticket | None:
        """What a request of ``subject`` is counted for under ``tier`` (``llm``: the LLM call
        it makes; ``strip_usage``: the middleware itself asked for the usage event of its
        stream, taken out again on the way back); ``None`` when no limit of the tier applies."""
        if llm is None:
            plan = tier._templates.get(_PLAIN) or template_for(tier, None, False)
        else:
            plan = (not tier.models and tier._templates.get(_LLM)) or template_for(
                tier, llm.model, True
            )
        node = self._bound.node(subject, 0.0)
        if node is None:
            node = self._bound.put(subject, {}, 0.0)
        bindings = node.value
        binding = bindings.get(plan)
        if binding is None:
            if len(bindings) >= _MAX_BOUND:
                bindings.clear()
            base = f"{self._prefix}{{{hash_tag(subject)}}}:"
            binding = bindings[plan] = plan.bind(self._prefix, base, self._lease)
        checks, slot = binding
        if not checks and slot is None:
            return None
        if llm is None:
            return Ticket(plan, checks, slot, None, False, 0, 0)
        prompt, estimate = self._estimates.estimate(llm)
        positions = plan.token_positions
        price = None
        if positions or plan.budgets:
            filled = list(checks)
            for i in positions:
                key, limit, window, _, _ = filled[i]
                filled[i] = new_check((key, limit, window, estimate, 0))
            if plan.budgets:
                price = self._price(llm)
                # the worst case: every reserved completion token at the output price
                cost = price.cost(prompt, estimate - prompt)
                for i in plan.budget_positions:
                    key, limit, window, _, period = filled[i]
                    filled[i] = new_check((key, limit, window, cost, period))
            checks = filled
        if price is None:
            return Ticket(plan, checks, slot, llm, strip_usage, estimate, prompt)
        return Ticket(plan, checks, slot, llm, strip_usage, estimate, prompt, "", price, subject)

    def _price(self, llm: LLMRequest) -> Price:
        price = self._prices.price(llm.model) if self._prices is not None else None
        if price is None:
            raise UnpricedModelError(llm.model)
        return price
