"""What a tier means for one kind of request, derived once and kept on the tier.

Per request only the counting key and the token estimate change; key suffixes, header names
and the ``RateLimit-Policy`` value are computed the first time a tier meets a kind of request
(with or without tokens, with or without a model of its own).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._engine import Check, Outcome
from ._headers import go_duration
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
    concurrency: int | None
    policy: bytes
    # (suffix, limit, window seconds, is tokens) per check: what checks() needs, flat
    _specs: tuple[tuple[str, int, int, bool], ...]
    _quoted: tuple[str, ...]  # '"name";r=' per check
    _openai: tuple[tuple[int, bytes, bytes, bytes, bytes], ...]

    def checks(self, base: str, estimate: int) -> list[Check]:
        return [
            Check(base + suffix, limit, seconds, estimate if tokens else 1)
            for suffix, limit, seconds, tokens in self._specs
        ]

    def fields(self, outcomes: Sequence[Outcome], slots_free: int) -> list[tuple[bytes, bytes]]:
        """``RateLimit-Policy``, ``RateLimit`` and OpenAI's ``x-ratelimit-*`` for one response."""
        states = [
            f"{quoted}{o.remaining};t={math.ceil(o.reset) if o.reset > 0 else 0}"
            for quoted, o in zip(self._quoted, outcomes, strict=True)
        ]
        if self.concurrency is not None:
            states.append(f'"concurrency";r={slots_free}')
        fields = [
            (b"ratelimit-policy", self.policy),
            (b"ratelimit", ", ".join(states).encode("ascii")),
        ]
        for position, limit_name, limit, remaining_name, reset_name in self._openai:
            outcome = outcomes[position]
            fields.append((limit_name, limit))
            fields.append((remaining_name, b"%d" % outcome.remaining))
            fields.append((reset_name, go_duration(outcome.reset).encode("ascii")))
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
    policies = []
    for kind, name, window in zip(kinds, names, windows, strict=True):
        unit = ';qu="tokens"' if kind == "tokens" else ""
        policies.append(f'"{name}";q={window.amount};w={window.seconds}{unit}')
    if tier.concurrency is not None:
        policies.append(f'"concurrency";q={tier.concurrency};qu="concurrent-requests"')
    first = tuple((kind, kinds.index(kind)) for kind in ("requests", "tokens") if kind in kinds)
    template = Template(
        kinds=tuple(kinds),
        names=tuple(names),
        suffixes=tuple(suffixes),
        windows=tuple(windows),
        token_positions=tuple(i for i, k in enumerate(kinds) if k == "tokens"),
        first=first,
        concurrency=tier.concurrency,
        policy=", ".join(policies).encode("ascii"),
        _specs=tuple(
            (suffix, w.amount, w.seconds, kind == "tokens")
            for kind, suffix, w in zip(kinds, suffixes, windows, strict=True)
        ),
        _quoted=tuple(f'"{name}";r=' for name in names),
        _openai=tuple(
            (
                position,
                f"x-ratelimit-limit-{kind}".encode(),
                b"%d" % windows[position].amount,
                f"x-ratelimit-remaining-{kind}".encode(),
                f"x-ratelimit-reset-{kind}".encode(),
            )
            for kind, position in first
        ),
    )
    tier._templates[key] = template
    return template
