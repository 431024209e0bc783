"""The middleware's options: one frozen object, validated once, with related options grouped.

``RateLimitMiddleware(app, tiers=..., trusted_proxies=[...])`` and
``RateLimitMiddleware(app, RateLimitOptions(tiers=..., callers=CallerOptions(...)))`` build the
same middleware: the keywords of a group (:data:`GROUPS`) are gathered into its object.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from .._config import check_choice, check_int, check_number, check_seconds, check_text
from .._openai import LLMRequest
from .._paths import PathSet
from ..exceptions import ConfigurationError
from ._budgets import PriceTable
from ._identity import ProxyTrust, tier_key
from ._tiers import STRATEGIES, Strategy, Tier

__all__ = [
    "GROUPS",
    "RENAMED",
    "CallerOptions",
    "OverrideProvider",
    "RateLimitOptions",
    "TokenEstimates",
]

OverrideProvider = Callable[[str], "Tier | Awaitable[Tier | None] | None"]

# old option name -> its name now (the old one still works, and warns once)
RENAMED: Final = {"storage": "store"}


def _strings(name: str, value: Any) -> tuple[str, ...]:
    """A collection of strings as a tuple (one string is refused: it is not a list of one)."""
    if isinstance(value, str) or not isinstance(value, Collection):
        raise ConfigurationError(f"{name} must be a list of strings, not {type(value).__name__}")
    items = tuple(value)
    if not all(isinstance(item, str) for item in items):
        raise ConfigurationError(f"{name} must be a list of strings")
    return items


@dataclass(frozen=True, slots=True)
class CallerOptions:
    """Who a request is counted as, when no principal says so, and by which key.

    ``trusted_proxies``: peers whose ``X-Forwarded-For`` is believed. ``client_type_header``:
    a header naming the tier of unauthenticated traffic, believed only from
    ``client_type_trusted_from`` and only for ``client_type_tiers`` (all tiers when ``None``).
    ``key_by``: one budget per user (``"principal"``) or per OAuth client (``"client"``).

    >>> CallerOptions(trusted_proxies=["10.0.0.0/8"]).trusted_proxies
    ('10.0.0.0/8',)
    """

    trusted_proxies: Collection[str] = ()
    client_type_header: str | None = None
    client_type_trusted_from: Collection[str] = ()
    client_type_tiers: Collection[str] | None = None
    key_by: Literal["principal", "client"] = "principal"

    def __post_init__(self) -> None:
        proxies = _strings("trusted_proxies", self.trusted_proxies)
        ProxyTrust(proxies, "trusted_proxies")  # refuses what is not an address or network
        trusted_from = _strings("client_type_trusted_from", self.client_type_trusted_from)
        ProxyTrust(trusted_from, "client_type_trusted_from")
        header = self.client_type_header
        if header is not None:
            check_text("client_type_header", header)
            if not trusted_from:
                # any caller could pick its own tier with the header: refuse rather than trust all
                raise ConfigurationError(
                    f"client_type_header {header!r} needs client_type_trusted_from: "
                    "the IP addresses or CIDRs of the gateways that set it (for example "
                    "client_type_trusted_from=['10.0.0.0/8']); otherwise any caller picks its tier"
                )
        tiers = self.client_type_tiers
        if tiers is not None:
            object.__setattr__(self, "client_type_tiers", _strings("client_type_tiers", tiers))
        check_choice("key_by", self.key_by, ("principal", "client"))
        object.__setattr__(self, "trusted_proxies", proxies)
        object.__setattr__(self, "client_type_trusted_from", trusted_from)


@dataclass(frozen=True, slots=True)
class TokenEstimates:
    """How the tokens of an LLM request are estimated before the answer states its usage.

    The prompt is ``ceil(prompt characters / chars_per_token)`` tokens, and for a chat (the
    Chat Completions and Responses APIs) the chat template's own tokens: ``tokens_per_message``
    for each message (its role markers and separators; the tools' section counts as one), and
    ``tokens_per_request`` once (the assistant prefix the reply starts from, and the default
    system prompt many templates add). Each choice's completion is the request's
    ``max_tokens`` (or ``max_completion_tokens``), else ``default_completion_tokens``.

    The defaults reserve at least what ChatML templates use: SmolLM2 writes 5 tokens around a
    message (6 around an assistant's), 4 of assistant prefix and a 21-token system prompt when
    the chat has none; OpenAI's models count 3 per message and 3 per request.

    >>> TokenEstimates(chars_per_token=2.0).prompt_tokens(9)
    5
    >>> TokenEstimates().prompt_tokens(2, messages=1)  # one short chat message: 1 + 6 + 25
    32
    """

    default_completion_tokens: int = 1024
    chars_per_token: float = 4.0
    tokens_per_message: int = 6
    tokens_per_request: int = 25

    def __post_init__(self) -> None:
        check_int("default_completion_tokens", self.default_completion_tokens, minimum=0)
        value = check_number("chars_per_token", self.chars_per_token, above=0)
        object.__setattr__(self, "chars_per_token", float(value))
        check_int("tokens_per_message", self.tokens_per_message, minimum=0)
        check_int("tokens_per_request", self.tokens_per_request, minimum=0)

    def prompt_tokens(self, chars: int, messages: int = 0) -> int:
        """The estimated tokens of ``chars`` characters of prompt in ``messages`` messages of
        a chat template (0: none applies, as to a text completion or an embeddings input)."""
        tokens = math.ceil(chars / self.chars_per_token)
        if messages:
            tokens += messages * self.tokens_per_message + self.tokens_per_request
        return tokens

    def reservation(self, prompt: int, max_tokens: int | None, choices: int) -> int:
        """The tokens reserved for a request: its prompt and every choice's completion."""
        completion = max_tokens if max_tokens is not None else self.default_completion_tokens
        return max(1, prompt + completion * choices)

    def estimate(self, request: LLMRequest) -> tuple[int, int]:
        """The prompt's estimated tokens and the reservation of ``request``, in one call."""
        # prompt_tokens and reservation inlined: this runs for every LLM request
        prompt = math.ceil(request.prompt_chars / self.chars_per_token)
        messages = request.prompt_messages
        if messages:
            prompt += messages * self.tokens_per_message + self.tokens_per_request
        completion = request.max_tokens
        if completion is None:
            completion = self.default_completion_tokens
        return prompt, max(1, prompt + completion * request.choices)


@dataclass(frozen=True, slots=True)
class RateLimitOptions:
    """Every option of :class:`~aimiddleware.ratelimit.RateLimitMiddleware`, validated.

    The options table of ``docs/ratelimit.md`` says what each one means; ``callers`` and
    ``token_estimates`` group the options of :class:`CallerOptions` and
    :class:`TokenEstimates`. ``tiers`` is kept as a tuple, in the order given.

    >>> options = RateLimitOptions(tiers=[Tier("agent", requests="600/minute")])
    >>> options.store, options.callers.key_by, options.token_estimates.chars_per_token
    ('memory://', 'principal', 4.0)
    """

    tiers: Sequence[Tier] | Mapping[str, Tier]
    default_tier: str | None = None
    store: str = "memory://"
    strategy: Strategy = "sliding-window"
    key_prefix: str = "aimw:rl:"
    timeout: float | None = None
    on_store_error: Literal["open", "closed"] = "open"
    callers: CallerOptions = CallerOptions()
    overrides: OverrideProvider | None = None
    token_estimates: TokenEstimates = TokenEstimates()
    concurrency_lease: float = 60.0
    exempt_paths: Collection[str] = ()
    max_request_bytes: int = 8 * 1024 * 1024
    prices: PriceTable | None = None
    budget_alerts: Sequence[float] = (0.8, 1.0)

    def __post_init__(self) -> None:
        tiers = self._check_tiers()
        self._check_default_tier(tiers)
        check_text("store", self.store)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_text("key_prefix", self.key_prefix, empty=True)
        if "{" in self.key_prefix or "}" in self.key_prefix:
            # the caller's key is the Redis Cluster hash tag: the prefix must not open another
            raise ConfigurationError("key_prefix must be a string without '{' or '}'")
        if self.timeout is not None:
            check_seconds("timeout", self.timeout)
        check_choice("on_store_error", self.on_store_error, ("open", "closed"))
        self._check_groups(tiers)
        if self.overrides is not None and not callable(self.overrides):
            raise ConfigurationError("overrides must be a callable")
        check_seconds("concurrency_lease", self.concurrency_lease)
        exempt = _strings("exempt_paths", self.exempt_paths)
        PathSet(exempt, option="exempt_paths")  # refuses a pattern outside the path grammar
        check_int("max_request_bytes", self.max_request_bytes, minimum=1)
        self._check_budgets(tiers)
        object.__setattr__(self, "tiers", tuple(tiers))
        if self.timeout is not None:
            object.__setattr__(self, "timeout", float(self.timeout))
        object.__setattr__(self, "concurrency_lease", float(self.concurrency_lease))
        object.__setattr__(self, "exempt_paths", exempt)

    def _check_tiers(self) -> list[Tier]:
        given = self.tiers
        tiers = list(given.values() if isinstance(given, Mapping) else given)
        if not tiers or not all(isinstance(t, Tier) for t in tiers):
            raise ConfigurationError("tiers must be a non-empty list of Tier")
        # tier names are compared in one form everywhere: a claim or header saying HUMAN is human
        if len({tier_key(t.name) for t in tiers}) != len(tiers):
            raise ConfigurationError("two tiers share a name (names are case-insensitive)")
        return tiers

    def _check_default_tier(self, tiers: list[Tier]) -> None:
        default = self.default_tier
        if default is None and len(tiers) > 1:
            raise ConfigurationError(
                f"with several tiers ({', '.join(t.name for t in tiers)}), name the "
                "default_tier that callers without a tier of their own get"
            )
        names = {tier_key(t.name) for t in tiers}
        if default is not None and (not isinstance(default, str) or tier_key(default) not in names):
            raise ConfigurationError(f"default_tier {default!r} is not one of the tiers")

    def _check_groups(self, tiers: list[Tier]) -> None:
        if not isinstance(self.callers, CallerOptions):
            raise ConfigurationError("callers must be a CallerOptions")
        if not isinstance(self.token_estimates, TokenEstimates):
            raise ConfigurationError("token_estimates must be a TokenEstimates")
        named = self.callers.client_type_tiers
        unknown = {tier_key(n) for n in named or ()} - {tier_key(t.name) for t in tiers}
        if unknown:
            raise ConfigurationError(f"client_type_tiers names unknown tiers: {sorted(unknown)}")

    def _check_budgets(self, tiers: list[Tier]) -> None:
        if self.prices is not None and not isinstance(self.prices, PriceTable):
            raise ConfigurationError("prices must be a PriceTable")
        budgeted = [t.name for t in tiers if t.budgets]
        if budgeted and self.prices is None:
            raise ConfigurationError(
                f"tiers {budgeted} have budgets: give prices=PriceTable(...) to price them"
            )
        alerts: Any = self.budget_alerts
        if isinstance(alerts, str) or not isinstance(alerts, Collection):
            raise ConfigurationError("budget_alerts must be a list of fractions such as 0.8")
        checked = sorted({check_number("budget_alerts", a, above=0, maximum=1.0) for a in alerts})
        object.__setattr__(self, "budget_alerts", tuple(float(a) for a in checked))

    @property
    def all_tiers(self) -> tuple[Tier, ...]:
        """The tiers, in the order given."""
        tiers = self.tiers
        return tuple(tiers.values()) if isinstance(tiers, Mapping) else tuple(tiers)


# group field -> its class: the middleware's keywords for a group's options are gathered into it
GROUPS: Final[dict[str, type[CallerOptions] | type[TokenEstimates]]] = {
    "callers": CallerOptions,
    "token_estimates": TokenEstimates,
}
