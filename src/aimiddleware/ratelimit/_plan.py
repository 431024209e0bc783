"""What a tier means for one kind of request, derived once and kept on the tier.

Per request only the counting key and the token estimate change; key suffixes, header names
and the ``RateLimit-Policy`` value are computed the first time a tier meets a kind of request
(with or without tokens, with or without a model of its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._engine import Check, Outcome
from ._headers import reset_duration
from ._identity import hash_tag
from ._options import Tier, Window

__all__ = ["Template", "template_for"]


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
