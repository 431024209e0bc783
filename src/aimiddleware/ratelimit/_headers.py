"""The response fields: IETF ``RateLimit-Policy`` / ``RateLimit`` and OpenAI ``x-ratelimit-*``.

IETF form (draft-ietf-httpapi-ratelimit-headers-10/-11): structured-field lists of items, one
per quota policy::

    RateLimit-Policy: "requests";q=600;w=60, "tokens";q=200000;w=60;qu="tokens"
    RateLimit: "requests";r=599;t=42, "tokens";r=199000;t=42
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Quota", "go_duration", "ietf_fields", "openai_fields"]


@dataclass(frozen=True, slots=True)
class Quota:
    """One limit as advertised: its policy name, unit, quota, window and current state."""

    name: str
    kind: str  # requests | tokens | concurrency
    limit: int
    window: int | None
    remaining: int
    reset: float


_UNITS = {"requests": None, "tokens": "tokens", "concurrency": "concurrent-requests"}


def ietf_fields(quotas: list[Quota]) -> list[tuple[bytes, bytes]]:
    policies: list[str] = []
    states: list[str] = []
    for quota in quotas:
        policy = f'"{quota.name}";q={quota.limit}'
        if quota.window is not None:
            policy += f";w={quota.window}"
        unit = _UNITS[quota.kind]
        if unit is not None:
            policy += f';qu="{unit}"'
        policies.append(policy)
        state = f'"{quota.name}";r={quota.remaining}'
        if quota.window is not None:
            state += f";t={max(0, math.ceil(quota.reset))}"
        states.append(state)
    if not policies:
        return []
    return [
        (b"ratelimit-policy", ", ".join(policies).encode("ascii")),
        (b"ratelimit", ", ".join(states).encode("ascii")),
    ]


def go_duration(seconds: float) -> str:
    """A duration as OpenAI writes it in ``x-ratelimit-reset-*``: ``20ms``, ``1.5s``, ``6m0s``.

    >>> go_duration(360), go_duration(1.5), go_duration(0.02)
    ('6m0s', '1.5s', '20ms')
    """
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole_ms = round(seconds * 1000)
    hours, rest = divmod(whole_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def openai_fields(quotas: list[Quota]) -> list[tuple[bytes, bytes]]:
    """OpenAI's fields for the first (shortest-window) requests and tokens limits."""
    fields: list[tuple[bytes, bytes]] = []
    for kind in ("requests", "tokens"):
        quota = next((q for q in quotas if q.kind == kind), None)
        if quota is None:
            continue
        fields += [
            (f"x-ratelimit-limit-{kind}".encode(), str(quota.limit).encode()),
            (f"x-ratelimit-remaining-{kind}".encode(), str(quota.remaining).encode()),
            (f"x-ratelimit-reset-{kind}".encode(), go_duration(quota.reset).encode()),
        ]
    return fields
