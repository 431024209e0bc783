"""Spend budgets: a price table per model, budgets in currency per caller or per tier.

Money is counted in whole nano-units of the currency (10**-9) so that the engines count it
exactly as they count tokens: integers, all or nothing with the request's other limits. A
price per million tokens becomes a whole number of pico-units per token (10**-12: six decimal
places of the price are kept exactly), and the cost of a request is rounded up to the next
nano-unit. A budget's period is a calendar day or month in UTC, the same on every worker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, Literal

from ..exceptions import ConfigurationError
from ._engine import Outcome
from ._headers import reset_duration

__all__ = [
    "MAX_BUDGET",
    "PERIODS",
    "Budget",
    "Price",
    "PriceTable",
    "UnpricedModelError",
    "budget_fields",
    "budget_specs",
    "format_money",
    "period_bounds",
]

Period = Literal["day", "month"]
# the engines' codes for a budget's period (0: a check over the strategy's window)
PERIODS: Final = {"day": 1, "month": 2}
_DAY_MS: Final = 86_400_000
NANO: Final = 10**9
# the largest budget the Redis script counts exactly (its numbers are doubles: 2**53 nano-units)
MAX_BUDGET: Final = Decimal(2**53 - 1) / NANO


def _decimal(name: str, value: Any, places: int) -> Decimal:
    """``value`` (a number or a numeric string) as a Decimal >= 0 with at most ``places``
    decimal places, else a ConfigurationError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ConfigurationError(f"{name} must be a number or a numeric string, got {value!r}")
    try:
        # a float goes through its shortest repr: 0.15 is 0.15, not 0.1499999...
        number = Decimal(repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        raise ConfigurationError(f"{name} must be a number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
    if number != number.quantize(Decimal(1).scaleb(-places)):
        raise ConfigurationError(f"{name} has more than {places} decimal places: {value!r}")
    return number


def format_money(nano: int) -> str:
    """Nano-units as a decimal amount without trailing zeros.

    >>> format_money(4_999_999_100), format_money(5 * 10**9), format_money(0)
    ('4.9999991', '5', '0')
    """
    whole, fraction = divmod(max(0, nano), NANO)
    if not fraction:
        return str(whole)
    return f"{whole}.{fraction:09d}".rstrip("0")


@dataclass(frozen=True, slots=True)
class Price:
    """What a model costs, in currency per million tokens.

    ``cached_input`` is the price of prompt tokens the upstream read from its prompt cache
    (``usage.prompt_tokens_details.cached_tokens``); ``None`` prices them as ``input``.

    >>> Price(input=0.15, output=0.6).output
    Decimal('0.6')
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    # pico-units per token: (input, cached input, output)
    per_token: tuple[int, int, int] = field(default=(0, 0, 0), repr=False, compare=False)

    def __init__(self, *, input: Any, output: Any, cached_input: Any = None) -> None:
        price_in = _decimal("Price input", input, 6)
        price_out = _decimal("Price output", output, 6)
        cached = None if cached_input is None else _decimal("Price cached_input", cached_input, 6)
        object.__setattr__(self, "input", price_in)
        object.__setattr__(self, "output", price_out)
        object.__setattr__(self, "cached_input", cached)
        pico = (price_in * 10**6, (price_in if cached is None else cached) * 10**6)
        object.__setattr__(self, "per_token", (int(pico[0]), int(pico[1]), int(price_out * 10**6)))

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> int:
        """The cost in nano-units of a request's tokens, rounded up (``cached_tokens`` are
        part of ``input_tokens``, as OpenAI counts them).

        >>> Price(input=0.15, output=0.6).cost(1000, 500)
        450000
        """
        pin, pcached, pout = self.per_token
        cached = min(max(0, cached_tokens), input_tokens)
        pico = (input_tokens - cached) * pin + cached * pcached + output_tokens * pout
        return -(-pico // 1000)


class PriceTable:
    """Prices per model, and the currency they are in.

    ``"*"`` prices every model the table does not name; without it, a request for a model
    the table does not name is refused (400, ``model_not_priced``) wherever a budget applies.

    >>> table = PriceTable({"gpt-4o-mini": Price(input=0.15, output=0.6)})
    >>> table.price("gpt-4o-mini").input, table.price("other")
    (Decimal('0.15'), None)
    """

    __slots__ = ("currency", "prices")

    def __init__(self, prices: Mapping[str, Price], currency: str = "USD") -> None:
        if not isinstance(prices, Mapping) or not prices:
            raise ConfigurationError("a PriceTable needs a non-empty mapping of model -> Price")
        for model, price in prices.items():
            if not isinstance(model, str) or not model:
                raise ConfigurationError("a PriceTable's models must be non-empty strings")
            if not isinstance(price, Price):
                raise ConfigurationError(f"PriceTable[{model!r}] must be a Price")
        if not isinstance(currency, str) or not currency.isalpha() or not currency.isascii():
            raise ConfigurationError(f"currency must be a code such as 'USD', got {currency!r}")
        self.prices: dict[str, Price] = dict(prices)
        self.currency = currency.upper()

    def price(self, model: str | None) -> Price | None:
        """The price of ``model``, the table's ``"*"`` price, or ``None``."""
        prices = self.prices
        found = prices.get(model) if model is not None else None
        return found if found is not None else prices.get("*")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceTable:
        """A table from ``{"currency": "USD", "models": {"name": {"input": 0.1, ...}}}``."""
        if not isinstance(data, Mapping) or not isinstance(data.get("models"), Mapping):
            raise ConfigurationError('a price table is {"currency": ..., "models": {...}}')
        prices = {}
        for model, entry in data["models"].items():
            if not isinstance(entry, Mapping) or set(entry) - {"input", "output", "cached_input"}:
                raise ConfigurationError(
                    f"price of {model!r}: expected input, output and optionally cached_input"
                )
            try:
                prices[model] = Price(**entry)
            except TypeError as exc:
                raise ConfigurationError(f"price of {model!r}: {exc}") from None
        return cls(prices, data.get("currency", "USD"))

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        """A table from a JSON file in the form :meth:`from_dict` reads."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the price table {path}: {exc}") from None
        return cls.from_dict(data)

    def __repr__(self) -> str:
        return f"PriceTable({sorted(self.prices)}, currency={self.currency!r})"


@dataclass(frozen=True, slots=True)
class Budget:
    """At most ``amount`` of the price table's currency per calendar ``period`` (UTC).

    ``per="caller"``: each caller of the tier has its own budget (counted under the same key
    as its other limits); ``per="tier"``: one budget shared by every caller of the tier.

    >>> Budget("5.00", "day").nano, Budget(100, "month", per="tier").name
    (5000000000, 'tier-month')
    """

    amount: Decimal
    period: Period
    per: Literal["caller", "tier"] = "caller"
    nano: int = field(default=0, repr=False, compare=False)

    def __init__(
        self, amount: Any, period: Period = "month", *, per: Literal["caller", "tier"] = "caller"
    ) -> None:
        value = _decimal("Budget amount", amount, 9)
        if value <= 0 or value > MAX_BUDGET:
            raise ConfigurationError(
                f"Budget amount must be > 0 and at most {MAX_BUDGET:.0f}, got {amount!r}"
            )
        if period not in PERIODS:
            raise ConfigurationError(f"Budget period must be 'day' or 'month', got {period!r}")
        if per not in ("caller", "tier"):
            raise ConfigurationError(f"Budget per must be 'caller' or 'tier', got {per!r}")
        object.__setattr__(self, "amount", value)
        object.__setattr__(self, "period", period)
        object.__setattr__(self, "per", per)
        object.__setattr__(self, "nano", int(value * NANO))

    @property
    def name(self) -> str:
        """The budget's name in headers and messages: ``day``, ``month``, ``tier-day``..."""
        return self.period if self.per == "caller" else f"tier-{self.period}"


# the period each code is in now, kept until it ends: (start ms, end ms, index) per code
_CURRENT: dict[int, tuple[int, int, int]] = {}


def period_bounds(now_ms: int, code: int) -> tuple[int, int, int]:
    """(index, start ms, end ms) of the UTC day (code 1) or month (code 2) holding ``now_ms``.

    A month's index is ``year * 12 + month - 1``, as the Redis script computes it.

    >>> period_bounds(1_764_633_600_000, 2)  # 2025-12-02T00:00:00Z
    (24311, 1764547200000, 1767225600000)
    """
    current = _CURRENT.get(code)
    if current is not None and current[0] <= now_ms < current[1]:
        return current[2], current[0], current[1]
    if code == 1:
        index = now_ms // _DAY_MS
        start, end = index * _DAY_MS, (index + 1) * _DAY_MS
    else:
        moment = datetime.fromtimestamp(now_ms / 1000, UTC)
        year, month = moment.year, moment.month
        index = year * 12 + month - 1
        start = _month_start(year, month)
        end = _month_start(year + month // 12, month % 12 + 1)
    _CURRENT[code] = (start, end, index)
    return index, start, end


def _month_start(year: int, month: int) -> int:
    return math.floor(datetime(year, month, 1, tzinfo=UTC).timestamp()) * 1000


class UnpricedModelError(Exception):
    """A budget applies and the price table has no price for the request's model."""

    def __init__(self, model: str | None) -> None:
        super().__init__(model)
        self.model = model


def budget_fields(
    positions: Sequence[int], budgets: Sequence[Budget], outcomes: Sequence[Outcome]
) -> list[tuple[bytes, bytes]]:
    """``x-budget-remaining-<name>`` and ``x-budget-reset-<name>`` per budget."""
    fields = []
    for position, budget in zip(positions, budgets, strict=True):
        remaining, ms, _, _ = outcomes[position]
        name = budget.name.encode()
        fields.append((b"x-budget-remaining-" + name, format_money(remaining).encode()))
        fields.append((b"x-budget-reset-" + name, reset_duration(ms)))
    return fields


def budget_specs(tag: str, budgets: Sequence[Budget]) -> list[tuple[str, int, int, int, int, bool]]:
    """The checks of ``budgets`` as a template binds them: (key suffix, limit in nano-units,
    window (unused), cost (the request's fills it), period code, tier-wide).

    A tier-wide budget's key has the tier's hash tag (``tag``) rather than the caller's.
    """
    return [
        (
            f"budget:{b.period}" if b.per == "caller" else f"{{tier={tag}}}:tier-budget:{b.period}",
            b.nano,
            0,
            0,
            PERIODS[b.period],
            b.per == "tier",
        )
        for b in budgets
    ]
