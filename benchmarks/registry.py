"""Every benchmark configuration, by name.

Each configuration module lists its configurations in ``CONFIGS``; :data:`MODULES` names those
modules, and :func:`collect` keeps one configuration per name: a name defined twice is an
error, except over a ``fallback`` (a peer the stack module defines in case no module of its own
does). A configuration whose ``requires`` cannot be imported here is kept in
:data:`UNAVAILABLE` with the reason, and the report lists it instead of measuring it.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import (
    configs_baseline,
    configs_guard,
    configs_idempotency,
    configs_oauth,
    configs_ratelimit,
    configs_series,
    configs_sse_normalize,
    configs_stack,
    configs_tracing,
    mcp_guards,
)
from .apps import Config, missing

MODULES = (
    configs_baseline,
    configs_guard,
    configs_idempotency,
    configs_oauth,
    configs_ratelimit,
    configs_sse_normalize,
    configs_stack,
    configs_series,
    configs_tracing,
    mcp_guards,
)


def collect(
    configs: Iterable[Config],
) -> tuple[dict[str, Config], dict[str, tuple[Config, str]]]:
    """One configuration per name, split into those that can be built here and those that
    cannot (with the reason); the order is that of each name's first definition."""
    chosen: dict[str, Config] = {}
    for cfg in configs:
        held = chosen.get(cfg.name)
        if held is not None and held.fallback == cfg.fallback:
            twice = "twice as a fallback" if cfg.fallback else "twice"
            raise ValueError(f"benchmark configuration {cfg.name!r} defined {twice}")
        if held is None or held.fallback:
            chosen[cfg.name] = cfg
    available: dict[str, Config] = {}
    unavailable: dict[str, tuple[Config, str]] = {}
    for name, cfg in chosen.items():
        reason = missing(cfg.requires)
        if reason is None:
            available[name] = cfg
        else:
            unavailable[name] = (cfg, reason)
    return available, unavailable


CONFIGS, UNAVAILABLE = collect(cfg for module in MODULES for cfg in module.CONFIGS)
