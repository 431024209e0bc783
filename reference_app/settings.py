"""Settings of the reference app: command-line flags, else ``AIMW_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aimiddleware.exceptions import ConfigurationError
from aimiddleware.ratelimit import Budget

BUNDLED_PRICES = Path(__file__).with_name("prices.json")


def parse_budgets(text: str, per: Literal["caller", "tier"]) -> list[Budget]:
    """``"5/day"``, ``"1/day;20/month"``: budgets of ``amount/period``.

    >>> [(b.amount, b.name) for b in parse_budgets("1.50/day;20/month", "tier")]
    [(Decimal('1.50'), 'tier-day'), (Decimal('20'), 'tier-month')]
    """
    budgets = []
    for part in text.split(";"):
        amount, slash, period = part.strip().partition("/")
        if not slash or period.strip() not in ("day", "month"):
            raise ValueError(f"a budget is `amount/day` or `amount/month`, got {part.strip()!r}")
        try:
            budgets.append(Budget(amount.strip(), period.strip(), per=per))  # type: ignore[arg-type]
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
    return budgets


class Settings(BaseSettings):
    """Every setting can be given as an environment variable with the ``AIMW_`` prefix,
    e.g. ``AIMW_INSTANCES=2`` or ``AIMW_REDIS_URL=redis://127.0.0.1:6379/0``.
    """

    model_config = SettingsConfigDict(env_prefix="AIMW_", extra="ignore", env_parse_none_str="off")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    model: Path | None = Field(None, description="a GGUF file; default: the bundled SmolLM2")
    model_name: str | None = Field(None, description="the id clients use; default: from the file")
    instances: int = Field(1, ge=1, le=64, description="model instances generating in parallel")
    n_ctx: int = Field(2048, ge=128, description="context window per instance, in tokens")
    n_threads: int | None = Field(None, ge=1, description="CPU threads per instance")
    gpu_layers: int = Field(-1, description="layers offloaded when built with CUDA (-1: all)")
    logprobs: bool = Field(
        True,
        description="keep logits of every token so requests may ask for logprobs "
        "(costs up to n_ctx x vocabulary x 8 bytes per instance; false saves it)",
    )
    max_queue: int = Field(32, ge=0, description="requests waiting for an instance before 503")
    generation_timeout: float = Field(
        120.0, gt=0, description="seconds per request, queue included"
    )
    sse_heartbeat: float = Field(
        15.0, gt=0, description="seconds of stream silence before a `: keep-alive` comment"
    )
    # request guards (docs/guard.md): what the server refuses before anything reads it
    max_request_body: int | None = Field(
        1024 * 1024, ge=1, description="largest request body in bytes, else 413 (`off`: none)"
    )
    request_body_timeout: float | None = Field(
        30.0, gt=0, description="seconds for the whole request body, else 408 (`off`: none)"
    )
    max_request_headers: int | None = Field(
        32 * 1024,
        ge=1024,
        description="largest total of header names and values, else 431 (`off`: none)",
    )
    redis_url: str | None = Field(None, description="shared stores; default: in-memory stores")
    store_timeout: float = Field(
        0.5,
        gt=0,
        description="seconds a Redis call may take before the request meets the middleware's "
        "store-fault behaviour",
    )
    response_ttl: float = Field(
        86400.0, gt=0, description="seconds a stored response (Responses API, store: true) is kept"
    )
    response_store_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="bytes of stored responses kept in memory, least recently used dropped first "
        "(in-memory stores only; Redis keeps them until their TTL)",
    )
    # rate limits (docs/reference_app.md): the demo tiers, chosen per caller
    rate_limits: bool = Field(True, description="tiered request/token/concurrency limits")
    agent_requests: str | None = Field("600/minute", description="agent tier requests")
    agent_tokens: str | None = Field("200000/minute", description="agent tier LLM tokens")
    agent_concurrency: int | None = Field(8, ge=1, description="agent tier requests in flight")
    human_requests: str | None = Field("60/minute", description="human tier requests")
    human_tokens: str | None = Field("40000/minute", description="human tier LLM tokens")
    human_concurrency: int | None = Field(2, ge=1, description="human tier requests in flight")
    anonymous_tier: str = Field("human", description="tier of callers nothing else places")
    # spend budgets (docs/reference_app.md): money per caller or per tier, priced per model
    prices: Path | None = Field(
        None,
        description="a JSON price table (docs/ratelimit.md#spend-budgets); default: "
        "reference_app/prices.json, a notional price for the bundled model and any other",
    )
    agent_budget: str | None = Field(
        "5/day",
        description="each agent's spend budget: `amount/day` or `amount/month`, "
        "`;` between two (`off`: none)",
    )
    human_budget: str | None = Field("1/day", description="each person's spend budget, likewise")
    agent_tier_budget: str | None = Field(
        None, description="one spend budget shared by all agents, likewise"
    )
    human_tier_budget: str | None = Field(
        None, description="one spend budget shared by all people, likewise"
    )
    budget_alerts: list[float] = Field(
        default_factory=lambda: [0.8, 1.0],
        description="shares of a spend budget logged (and counted) once per period",
    )
    # priority between tiers in the line for a model instance (docs/reference_app.md)
    priority: bool = Field(
        True, description="serve waiting requests by tier weight (false: first come first served)"
    )
    human_weight: float = Field(
        4.0, gt=0, description="human tier's share of the instances that come free while both wait"
    )
    agent_weight: float = Field(1.0, gt=0, description="agent tier's share, likewise")
    client_type_header: str | None = Field(
        None, description="trusted header naming the tier of unauthenticated callers"
    )
    client_type_trusted_from: list[str] = Field(
        default_factory=list,
        description="gateways (IPs/CIDRs) allowed to send that header; required with it",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, description="peers whose X-Forwarded-For is believed"
    )
    rate_limit_on_store_error: Literal["open", "closed"] = "open"
    idempotency_on_store_error: Literal["open", "closed"] = Field(
        "closed", description="store down: 503 + Retry-After (closed) or run without a record"
    )
    auth: bool = Field(
        True, description="OAuth on: tokens from `python -m reference_app token` (AIMW_AUTH=0: off)"
    )
    public_url: str | None = Field(
        None, description="the URL clients use (resource and issuer); default http://host:port"
    )
    demo: bool = Field(
        False,
        description="demo mode: the playground at / gets short-lived tokens from GET /demo/token "
        "(anyone who reaches the server can; for local demos only)",
    )
    auth_key_file: Path = Field(
        Path(".reference_app/issuer-key.json"),
        description="the development issuer's private key, created on first use",
    )
    log_level: str = "info"
    access_log: bool = Field(
        False, description="one JSON line per request on the aimiddleware.access logger"
    )
    mcp_allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:*", "http://127.0.0.1:*"],
        description="browser origins allowed to reach /mcp (requests without Origin pass); "
        "as JSON in the environment: AIMW_MCP_ALLOWED_ORIGINS='[\"https://chat.example.com\"]'",
    )
    mcp_resource_metadata: str | None = Field(
        None, description="RFC 9728 metadata URL named in /mcp's 401/403 challenges"
    )

    @field_validator("agent_budget", "human_budget", "agent_tier_budget", "human_tier_budget")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        if value is not None:
            parse_budgets(value, "caller")  # raises with the reason
        return value

    @property
    def store_url(self) -> str:
        """The one store URL of the idempotency store and the rate limiter (so they share one
        Redis client), with the store timeout as its ``timeout`` parameter (Redis only)."""
        if not self.redis_url:
            return "memory://"
        parts = urlsplit(self.redis_url)
        query = [
            (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "timeout"
        ]
        query.append(("timeout", f"{self.store_timeout:g}"))
        return urlunsplit(parts._replace(query=urlencode(query)))
