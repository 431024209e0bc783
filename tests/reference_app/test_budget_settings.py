"""The reference app's spend budgets from settings: the demo defaults, the forms a budget is
written in, and a price table from a file."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from aimiddleware.exceptions import ConfigurationError
from aimiddleware.ratelimit import Budget, RateLimitMiddleware
from reference_app import Settings
from reference_app.stack import _rate_limits


def limiter(**settings: Any) -> RateLimitMiddleware:
    found = _rate_limits(object(), Settings(**settings))
    assert isinstance(found, RateLimitMiddleware)
    return found


def test_the_demo_budgets_and_their_bundled_prices() -> None:
    config = limiter().config
    tiers = {tier.name: tier for tier in config.tiers}
    assert tiers["agent"].budgets == (Budget(5, "day"),)
    assert tiers["human"].budgets == (Budget(1, "day"),)
    assert config.prices is not None
    assert config.prices.currency == "USD"
    # the bundled model by name, and any other the server is started with
    assert config.prices.price("SmolLM2-135M-Instruct") is not None
    assert config.prices.price("some-other.gguf") == config.prices.price("SmolLM2-135M-Instruct")


def test_budgets_per_caller_and_per_tier_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIMW_AGENT_BUDGET", "1.5/day;20/month")
    monkeypatch.setenv("AIMW_AGENT_TIER_BUDGET", "500/month")
    monkeypatch.setenv("AIMW_HUMAN_BUDGET", "off")
    monkeypatch.setenv("AIMW_BUDGET_ALERTS", "[0.5, 0.9]")
    config = limiter().config
    tiers = {tier.name: tier for tier in config.tiers}
    assert [(b.amount, b.name) for b in tiers["agent"].budgets] == [
        (Decimal("1.5"), "day"),
        (Decimal("20"), "month"),
        (Decimal("500"), "tier-month"),
    ]
    assert tiers["human"].budgets == ()
    assert config.budget_alerts == (0.5, 0.9)


def test_without_budgets_no_price_table_is_read(tmp_path: Path) -> None:
    config = limiter(agent_budget=None, human_budget=None, prices=tmp_path / "absent.json").config
    assert config.prices is None


@pytest.mark.parametrize("written", ["5/week", "5", "five/day", "-1/day", "0/month"])
def test_a_budget_written_wrong_is_refused_with_its_reason(written: str) -> None:
    with pytest.raises(ValidationError, match="agent_budget"):
        Settings(agent_budget=written)


def test_a_price_table_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"currency": "eur", "models": {"m": {"input": 1, "output": 2}}}))
    prices = limiter(prices=path).config.prices
    assert prices is not None
    assert prices.currency == "EUR"
    assert prices.price("SmolLM2-135M-Instruct") is None  # refused with 400 model_not_priced
    path.write_text(json.dumps({"models": {"m": {"input": 1, "outptu": 2}}}))
    with pytest.raises(ConfigurationError, match="expected input, output"):
        limiter(prices=path)
    with pytest.raises(ConfigurationError, match="cannot read the price table"):
        limiter(prices=tmp_path / "absent.json")
