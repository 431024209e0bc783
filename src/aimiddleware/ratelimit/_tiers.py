"""Tiers: named sets of limits, per-model limits, windows parsed once with ``limits``' grammar."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from limits import RateLimitItem, parse_many

from .._config import check_int
from ..exceptions import ConfigurationError
from ._budgets import Budget

__all__ = ["STRATEGIES", "ModelLimits", "Strategy", "Tier", "Window"]

Strategy = Literal["sliding-window", "fixed-window", "moving-window"]
STRATEGIES: Final = ("sliding-window", "fixed-window", "moving-window")

LimitSpec = str | Sequence[str] | None


@dataclass(frozen=True, slots=True)
class Window:
    """One parsed limit: ``amount`` units per ``seconds``."""

    amount: int
    seconds: int

    @classmethod
    def from_item(cls, item: RateLimitItem) -> Window:
        return cls(int(item.amount), int(item.get_expiry()))

    def describe(self) -> str:
        return f"{self.amount} per {self.seconds}s"


def parse_windows(spec: LimitSpec, what: str) -> tuple[Window, ...]:
    """Parse ``"600/minute"``, ``"10/second;600/minute"`` or a list of such strings."""
    if spec is None:
        return ()
    texts = [spec] if isinstance(spec, str) else list(spec)
    windows: list[Window] = []
    for text in texts:
        if not isinstance(text, str):
            raise ConfigurationError(f"{what}: expected limit strings like '600/minute'")
        try:
            items = parse_many(text)
        except ValueError as exc:
            raise ConfigurationError(f"{what}: cannot parse {text!r} ({exc})") from exc
        windows.extend(Window.from_item(item) for item in items)
    for window in windows:
        if window.amount < 1 or window.seconds < 1:
            raise ConfigurationError(
                f"{what}: {window.describe()} must allow at least 1 per window"
            )
    if len({w.seconds for w in windows}) != len(windows):
        raise ConfigurationError(f"{what}: two limits over the same window length")
    return tuple(sorted(windows, key=lambda w: w.seconds))


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """Extra limits for one model, checked together with the tier's own.

    >>> ModelLimits(requests="20/minute", tokens="50000/minute").tokens
    (Window(amount=50000, seconds=60),)
    """

    requests: tuple[Window, ...] = ()
    tokens: tuple[Window, ...] = ()

    def __init__(self, *, requests: LimitSpec = None, tokens: LimitSpec = None) -> None:
        object.__setattr__(self, "requests", parse_windows(requests, "model requests"))
        object.__setattr__(self, "tokens", parse_windows(tokens, "model tokens"))


@dataclass(frozen=True, slots=True)
class Tier:
    """A named set of limits: requests and LLM tokens per window, concurrent requests, per model.

    Limits use the grammar of the ``limits`` package (``"600/minute"``, ``"10 per second"``;
    several windows separated by ``;`` or given as a list). ``None`` means unlimited.
    ``budgets`` caps spend per calendar day or month (:class:`Budget`, priced by the
    middleware's ``prices``), for each caller of the tier or for the tier as a whole.

    >>> agent = Tier("agent", requests="600/minute", tokens="200000/minute", concurrency=8)
    >>> agent.requests
    (Window(amount=600, seconds=60),)
    """

    name: str
    requests: tuple[Window, ...] = ()
    tokens: tuple[Window, ...] = ()
    concurrency: int | None = None
    models: Mapping[str, ModelLimits] = field(default_factory=dict)
    budgets: tuple[Budget, ...] = ()
    # what the middleware derives from the tier once (key suffixes, header names)
    _templates: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __init__(
        self,
        name: str,
        *,
        requests: LimitSpec = None,
        tokens: LimitSpec = None,
        concurrency: int | None = None,
        models: Mapping[str, ModelLimits] | None = None,
        budgets: Sequence[Budget] = (),
    ) -> None:
        if not isinstance(name, str) or not name or not name.isprintable():
            raise ConfigurationError("a tier needs a non-empty printable name")
        if concurrency is not None:
            check_int(f"tier {name!r}: concurrency", concurrency, minimum=1)
        models = dict(models or {})
        for model, extra in models.items():
            if not isinstance(extra, ModelLimits):
                raise ConfigurationError(f"tier {name!r}: models[{model!r}] must be ModelLimits")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "requests", parse_windows(requests, f"tier {name!r} requests"))
        object.__setattr__(self, "tokens", parse_windows(tokens, f"tier {name!r} tokens"))
        object.__setattr__(self, "concurrency", concurrency)
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "budgets", _budgets(name, budgets))
        object.__setattr__(self, "_templates", {})


def _budgets(tier: str, budgets: Sequence[Budget]) -> tuple[Budget, ...]:
    if isinstance(budgets, Budget) or not all(isinstance(b, Budget) for b in budgets):
        raise ConfigurationError(f"tier {tier!r}: budgets must be a list of Budget")
    found = tuple(budgets)
    if len({b.name for b in found}) != len(found):
        raise ConfigurationError(f"tier {tier!r}: two budgets over the same period and scope")
    return found
