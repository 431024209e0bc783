"""RateLimitMiddleware: tiered limits on requests, LLM tokens and concurrent requests."""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Final, Literal

import anyio

from .._asgi import (
    ASGIApp,
    ClientDisconnected,
    Message,
    Receive,
    RequestBodyTooLarge,
    Scope,
    Send,
    annotate,
    get_annotations,
    json_body,
    read_body,
    replace_body,
    route_path,
    send_json,
)
from .._lru import LRUCache, bound
from .._openai import LLMRequest, llm_operation, shared_llm_request
from .._paths import PathSet
from .._workers import warn_if_several_workers
from ..exceptions import ConfigurationError, StoreUnavailable
from ._engine import Check, Decision, Engine, Outcome, Slot
from ._exchange import Exchange
from ._headers import go_duration
from ._identity import Callers, hash_tag
from ._memory import MemoryEngine
from ._options import STRATEGIES, Strategy, Tier
from ._plan import Template, template_for
from ._releases import DeferredReleases
from ._storage import engine_from_url

__all__ = ["OverrideProvider", "RateLimitMiddleware"]

logger = logging.getLogger("aimiddleware.ratelimit")

# a caller's key prefix is remembered for this many recent callers (then forgotten at once)
_MAX_BASES: Final = 16384
# the template of a tier for requests that are not LLM calls
_PLAIN: Final = (None, False)

OverrideProvider = Callable[[str], "Tier | Awaitable[Tier | None] | None"]


def _whole_seconds(seconds: float) -> int:
    # Retry-After is whole seconds, at least 1: rounded up, never earlier than the real wait
    return max(1, math.ceil(seconds))


class RateLimitMiddleware:
    """Tier limits per caller on requests, LLM tokens and concurrent requests.

    The caller is the authenticated principal (``Principal.id``, one per user; with
    ``key_by="client"`` its OAuth client, ``Principal.client_key``; its ``tier``), else the
    client address (``X-Forwarded-For`` only from ``trusted_proxies``). Every limit of a
    request is checked and charged at once, all or nothing; token reservations are settled
    to the real ``usage`` of the answer, streamed or not. See ``docs/ratelimit.md``.

    >>> from starlette.applications import Starlette
    >>> app = RateLimitMiddleware(
    ...     Starlette(),
    ...     tiers=[
    ...         Tier("agent", requests="600/minute", tokens="200000/minute", concurrency=8),
    ...         Tier("human", requests="60/minute", tokens="40000/minute", concurrency=2),
    ...     ],
    ...     default_tier="human",
    ... )
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tiers: Sequence[Tier] | Mapping[str, Tier],
        default_tier: str | None = None,
        storage: str = "memory://",
        strategy: Strategy = "sliding-window",
        key_prefix: str = "aimw:rl:",
        timeout: float = 0.5,
        on_store_error: Literal["open", "closed"] = "open",
        trusted_proxies: Collection[str] = (),
        client_type_header: str | None = None,
        client_type_trusted_from: Collection[str] = (),
        client_type_tiers: Collection[str] | None = None,
        overrides: OverrideProvider | None = None,
        default_completion_tokens: int = 1024,
        chars_per_token: float = 4.0,
        concurrency_lease: float = 60.0,
        exempt_paths: Collection[str] = (),
        key_by: Literal["principal", "client"] = "principal",
        max_request_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.app = app
        listed = list(tiers.values()) if isinstance(tiers, Mapping) else list(tiers)
        self._callers = Callers(
            tiers=listed,
            default_tier=default_tier,
            trusted_proxies=trusted_proxies,
            client_type_header=client_type_header,
            client_type_trusted_from=client_type_trusted_from,
            client_type_tiers=client_type_tiers,
            key_by=key_by,
        )
        if strategy not in STRATEGIES:
            raise ConfigurationError(f"strategy must be one of {', '.join(STRATEGIES)}")
        if on_store_error not in ("open", "closed"):
            raise ConfigurationError("on_store_error must be 'open' or 'closed'")
        self._fail_open = on_store_error == "open"
        if not isinstance(key_prefix, str) or "{" in key_prefix or "}" in key_prefix:
            raise ConfigurationError("key_prefix must be a string without '{' or '}'")
        self._prefix = key_prefix
        for name, value in (("timeout", timeout), ("concurrency_lease", concurrency_lease)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds")
        if not isinstance(chars_per_token, int | float) or chars_per_token <= 0:
            raise ConfigurationError("chars_per_token must be positive")
        if not isinstance(default_completion_tokens, int) or default_completion_tokens < 0:
            raise ConfigurationError("default_completion_tokens must be a non-negative integer")
        self._chars_per_token = float(chars_per_token)
        self._default_completion = default_completion_tokens
        self._lease = float(concurrency_lease)
        if overrides is not None and not callable(overrides):
            raise ConfigurationError("overrides must be a callable")
        self._overrides = overrides
        self._exempt = PathSet(exempt_paths, option="exempt_paths")
        self._max_body: int = bound("max_request_bytes", max_request_bytes) or 0
        self._engine: Engine = engine_from_url(storage, strategy=strategy, timeout=float(timeout))
        # the memory engine is called synchronously: nothing in it waits
        self._memory = self._engine if isinstance(self._engine, MemoryEngine) else None
        self._moving = strategy == "moving-window"
        # per-process counts behind several workers are said once, at start-up
        self._check_workers = self._memory is not None
        self._storage_kind = self._engine.backend
        self._releases = DeferredReleases(self._engine)
        # the key prefix of each recent caller (its hash tag escaped once, not per request)
        self._bases: LRUCache[str, str] = LRUCache("rate limit key prefixes", _MAX_BASES)
        # slot leases and moving-window entries need a token unique across workers
        self._token_prefix = secrets.token_hex(6) + "."
        self._tokens = itertools.count()

    def __repr__(self) -> str:
        # the storage URL is left out: it may carry a password
        return (
            f"RateLimitMiddleware(tiers={sorted(t.name for t in self._callers.tiers.values())}, "
            f"default_tier={self._callers.default.name!r}, "
            f"storage={self._storage_kind!r}, strategy={self._engine.strategy!r}, "
            f"on_store_error={'open' if self._fail_open else 'closed'!r})"
        )

    async def aclose(self) -> None:
        """Close the storage's connections (call on application shutdown)."""
        await self._releases.aclose()
        await self._engine.aclose()

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def _send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.aclose()  # the storage's connections end with the app
            await send(message)

        return _send

    # -- who and which tier ------------------------------------------------------------------

    async def _override(self, subject: str, tier: Tier) -> Tier:
        assert self._overrides is not None
        try:
            result = self._overrides(subject)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            logger.warning("rate limit override provider failed, using the tier: %r", exc)
            return tier
        return result if isinstance(result, Tier) else tier

    # -- the request -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._check_workers:
            self._check_workers = False
            warn_if_several_workers("RateLimitMiddleware", "counters (memory://)")
        if scope["type"] != "http" or (self._exempt and self._exempt.matches(route_path(scope))):
            if scope["type"] == "lifespan":
                send = self._closing_on_shutdown(send)
            await self.app(scope, receive, send)
            return
        subject, tier = self._callers.resolve(scope)
        if self._overrides is not None:
            tier = await self._override(subject, tier)
        notes = get_annotations(scope)
        notes["aimiddleware.ratelimit.tier"] = tier.name

        llm: LLMRequest | None = None
        strip_usage = False
        if (tier.tokens or tier.models) and scope.get("method") == "POST":
            path = route_path(scope)
            if llm_operation(path):
                try:
                    _, receive = await read_body(scope, receive, limit=self._max_body)
                except ClientDisconnected:
                    return
                except RequestBodyTooLarge:
                    await self._too_large(scope, send)
                    return
                llm, receive, strip_usage = await self._llm_request(scope, path, receive)

        base = self._bases.get(subject, 0.0)
        if base is None:
            base = f"{self._prefix}{{{hash_tag(subject)}}}:"
            self._bases.put(subject, base, 0.0)
        estimate = prompt = 0
        if llm is not None:
            prompt = math.ceil(llm.prompt_chars / self._chars_per_token)
            completion = llm.max_tokens if llm.max_tokens is not None else self._default_completion
            completion *= llm.choices
            estimate = max(1, prompt + completion)
            plan = template_for(tier, llm.model, True)
        else:
            plan = tier._templates.get(_PLAIN) or template_for(tier, None, False)
        checks = plan.checks(base, estimate)
        slot = Slot(base + "slots", tier.concurrency, self._lease) if tier.concurrency else None
        if not checks and slot is None:
            await self.app(scope, receive, send)
            return
        token = f"{self._token_prefix}{next(self._tokens)}" if self._needs_token(slot) else ""
        try:
            if self._memory is not None:
                decision = self._memory.acquire_now(checks, slot, token)
            else:
                decision = await self._engine.acquire(checks, slot, token)
        except StoreUnavailable as exc:
            if slot is not None:
                # the script may still run when the store catches up: take that slot back
                self._releases.defer(slot, token, exc)
            await self._store_fault(scope, receive, send, exc)
            return
        outcomes = decision.outcomes
        slots_free = max(0, slot.limit - decision.slots_in_use) if slot else 0
        if not decision.allowed:
            await self._reject(scope, send, plan, checks, decision, slot, slots_free)
            return
        fields = plan.fields(outcomes, slots_free)
        for name, position in plan.remaining:
            notes[name] = outcomes[position].remaining
        if slot is None and not plan.token_positions:
            # nothing to settle afterwards: only the fields go out
            async def send_with_fields(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", ()), *fields]}
                await send(message)

            await self.app(scope, receive, send_with_fields)
            return
        if plan.token_positions:
            notes["aimiddleware.ratelimit.tokens_reserved"] = estimate
        exchange = Exchange(
            send,
            scope,
            fields,
            plan,
            checks,
            decision,
            slot,
            token,
            llm,
            estimate,
            prompt,
            strip_usage,
            self._renew,
            self._finish,
        )
        try:
            await self.app(scope, receive, exchange)
        finally:
            await exchange.settle()  # an error or a disconnect ended the response early

    def _needs_token(self, slot: Slot | None) -> bool:
        # slot leases and moving-window entries are told apart by the request's token
        return slot is not None or self._moving

    async def _llm_request(
        self, scope: Scope, path: str, receive: Receive
    ) -> tuple[LLMRequest | None, Receive, bool]:
        """The LLM request in the body, the ``receive`` to pass on, and whether the usage
        event the middleware asked for must be taken out of the stream."""
        payload = json_body(scope)
        llm = shared_llm_request(scope, path, payload)
        if llm is None or not llm.stream or llm.include_usage:
            return llm, receive, False
        assert isinstance(payload, dict)  # only dict bodies are LLM requests
        options = payload.get("stream_options")
        changed = {
            **payload,
            "stream_options": {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            },
        }
        return llm, await replace_body(receive, json.dumps(changed).encode()), True

    async def _reject(
        self,
        scope: Scope,
        send: Send,
        plan: Template,
        checks: list[Check],
        decision: Decision,
        slot: Slot | None,
        slots_free: int,
    ) -> None:
        outcomes = decision.outcomes
        if decision.failed >= len(checks):
            assert slot is not None
            kind, retry = "concurrency", 1.0
            message = (
                f"Rate limit reached on concurrent requests: limit {slot.limit} in flight. "
                "Please try again when one of your requests has finished."
            )
        else:
            check = checks[decision.failed]
            kind = plan.kinds[decision.failed]
            outcome: Outcome = outcomes[decision.failed]
            retry = max(outcome.retry_ms, 1) / 1000
            # the exhausted policy's reset (RateLimit t, x-ratelimit-reset-*) names the moment
            # Retry-After names, in the same whole seconds
            outcomes = list(outcomes)
            outcomes[decision.failed] = outcome._replace(reset_ms=_whole_seconds(retry) * 1000)
            per = f"{kind} per {go_duration(check.window)}"
            if check.cost > check.limit:
                message = (
                    f"Request too large for {per} ({plan.names[decision.failed]}): "
                    f"limit {check.limit}, requested {check.cost}."
                )
            else:
                message = (
                    f"Rate limit reached on {per} ({plan.names[decision.failed]}): "
                    f"limit {check.limit}, remaining {outcome.remaining}, requested {check.cost}. "
                    f"Please try again in {go_duration(retry)}."
                )
        annotate(scope, "aimiddleware.ratelimit.limited", kind)
        body = {
            "error": {
                "message": message,
                "type": kind,
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        fields = plan.fields(outcomes, slots_free)
        headers = [(b"retry-after", b"%d" % _whole_seconds(retry)), *fields]
        await send_json(send, 429, body, headers)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        annotate(scope, "aimiddleware.ratelimit.outcome", "body_too_large")
        body = {
            "error": {
                "message": f"The request body is larger than {self._max_body} bytes.",
                "type": "invalid_request_error",
                "param": None,
                "code": "request_too_large",
            }
        }
        await send_json(send, 413, body)

    async def _store_fault(
        self, scope: Scope, receive: Receive, send: Send, exc: StoreUnavailable
    ) -> None:
        mode = "open" if self._fail_open else "closed"
        logger.warning("rate limit store unavailable, failing %s: %s", mode, exc)
        annotate(scope, "aimiddleware.ratelimit.store_error", mode)
        if self._fail_open:
            await self.app(scope, receive, send)
            return
        body = {
            "error": {
                "message": "The rate limiter is unavailable; please try again shortly.",
                "type": "server_error",
                "param": None,
                "code": "rate_limiter_unavailable",
            }
        }
        await send_json(send, 503, body, [(b"retry-after", b"1")])

    async def _finish(
        self,
        adjustments: Sequence[tuple[Check, Outcome, int]],
        slot: Slot | None,
        token: str,
    ) -> None:
        """Settle one request: token adjustments and the slot's release."""
        if self._memory is not None:
            self._memory.settle_now(adjustments, slot, token)  # never suspends: not cancellable
            return
        # runs even when the request was cancelled (client gone): the slot must come back now
        with anyio.CancelScope(shield=True):
            try:
                await self._engine.settle(adjustments, slot, token)
            except StoreUnavailable as exc:
                # the slot is retried once the store answers; token adjustments are not
                # (they are not idempotent: the script may have run), the reservation stands
                if slot is not None:
                    self._releases.defer(slot, token, exc)
                else:
                    logger.warning("rate limit settlement failed, the reservation stands: %s", exc)

    async def _renew(self, slot: Slot, token: str) -> None:
        try:
            await self._engine.renew(slot, token)
        except StoreUnavailable as exc:
            logger.warning("rate limit slot renewal failed, the lease may lapse: %s", exc)
