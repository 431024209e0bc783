"""RateLimitMiddleware: tiered limits on requests, LLM tokens and concurrent requests."""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

from .._asgi import close_on_shutdown
from .._config import build_options
from .._openai import llm_operation, shared_llm_request
from .._paths import PathSet
from .._workers import warn_if_several_workers
from ..context import (
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
)
from ..exceptions import StoreUnavailable
from ._budgets import UnpricedModelError
from ._counter import Counter
from ._exchange import Exchange
from ._identity import Callers
from ._options import GROUPS, RENAMED, OverrideProvider, RateLimitOptions
from ._plan import Plans
from ._refusals import send_rejection, send_too_large, send_unavailable, send_unpriced
from ._tiers import Tier

__all__ = ["OverrideProvider", "RateLimitMiddleware"]

logger = logging.getLogger("aimiddleware.ratelimit")


class RateLimitMiddleware:
    """Tier limits per caller on requests, LLM tokens and concurrent requests.

    The caller is the authenticated principal (``Principal.id``, one per user; with
    ``key_by="client"`` its OAuth client, ``Principal.client_key``; its ``tier``), else the
    client address (``X-Forwarded-For`` only from ``trusted_proxies``). Every limit of a
    request is checked and charged at once, all or nothing; token reservations are settled
    to the real ``usage`` of the answer, streamed or not. The options are those of
    :class:`RateLimitOptions`, given as keywords or as that object (``config``); see
    ``docs/ratelimit.md``.

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

    def __init__(self, app: ASGIApp, config: RateLimitOptions | None = None, **options: Any):
        self.app = app
        self.config = build_options(
            "RateLimitMiddleware", RateLimitOptions, config, options, RENAMED, GROUPS
        )
        self._callers = Callers(self.config)
        exempt = PathSet(self.config.exempt_paths, option="exempt_paths")
        self._exempt = exempt if exempt else None
        self._overrides = self.config.overrides
        self._max_bytes = self.config.max_request_bytes
        self._plans = Plans(self.config)
        self._counter = Counter(self.config)
        self._engine = self._counter.engine
        # the memory engine never waits: its checks are plain calls, not coroutines
        self._memory = self._counter.memory is not None
        self._fail_open = self.config.on_store_error == "open"
        # per-process counts behind several workers are said once, at start-up
        self._check_workers = self._counter.memory is not None

    def __repr__(self) -> str:
        # the store URL is left out: it may carry a password
        config = self.config
        return (
            f"RateLimitMiddleware(tiers={sorted(t.name for t in config.all_tiers)}, "
            f"default_tier={self._callers.default.name!r}, "
            f"store={self._engine.backend!r}, strategy={config.strategy!r}, "
            f"on_store_error={config.on_store_error!r})"
        )

    async def aclose(self) -> None:
        """Close the store's connections (call on application shutdown)."""
        await self._counter.aclose()

    # -- the request: who, which tier, what it asks, the check, then the answer -----------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._check_workers:
            self._check_workers = False
            warn_if_several_workers("RateLimitMiddleware", "counters (memory://)")
        if scope["type"] != "http" or (
            self._exempt is not None and self._exempt.matches(route_path(scope))
        ):
            if scope["type"] == "lifespan":  # the store's connections end with the app
                send = close_on_shutdown(send, self.aclose, "RateLimitMiddleware", logger)
            await self.app(scope, receive, send)
            return
        # who is counted, under which tier
        subject, tier = self._callers.resolve(scope)
        if self._overrides is not None:
            tier = await self._override(subject, tier)
        notes = get_annotations(scope)
        notes["aimiddleware.ratelimit.tier"] = tier.name
        # what it asks for: an LLM call's tokens are estimated from its body
        llm = None
        strip_usage = False
        if (tier.tokens or tier.models or tier.budgets) and scope.get("method") == "POST":
            path = route_path(scope)
            if llm_operation(path) is not None:
                try:
                    _, receive = await read_body(scope, receive, limit=self._max_bytes)
                except ClientDisconnected:
                    return
                except RequestBodyTooLarge:
                    await send_too_large(scope, send, self._max_bytes)
                    return
                payload = json_body(scope)
                llm = shared_llm_request(scope, path, payload)
                # a stream whose client did not ask for its usage event is asked for it here
                if llm is not None and llm.stream and not llm.include_usage:
                    strip_usage = True
                    receive = await replace_body(receive, _asking_usage(payload))
        # every limit that applies, checked and charged at once
        try:
            ticket = self._plans.ticket(subject, tier, llm, strip_usage)
        except UnpricedModelError as exc:
            await send_unpriced(scope, send, exc.model)
            return
        if ticket is None:  # no limit of the tier applies
            await self.app(scope, receive, send)
            return
        counter = self._counter
        if self._memory:
            decision = counter.acquire_now(ticket)
        else:
            try:
                decision = await counter.acquire(ticket)
            except StoreUnavailable as exc:
                await self._store_fault(scope, receive, send, exc)
                return
        # refused, or run with the fields on the answer and settled as it ends
        if not decision.allowed:
            await send_rejection(scope, send, ticket, decision, counter.currency)
            return
        outcomes = decision.outcomes
        plan = ticket.plan
        slot = ticket.slot
        fields = plan.fields(
            outcomes, max(0, slot.limit - decision.slots_in_use) if slot is not None else 0
        )
        for name, position in plan.remaining:
            notes[name] = outcomes[position].remaining
        if slot is None and not plan.token_positions and not plan.budgets:
            # nothing to settle afterwards: only the fields go out
            await self.app(scope, receive, _with_fields(send, fields))
            return
        if plan.token_positions:
            notes["aimiddleware.ratelimit.tokens_reserved"] = ticket.estimate
        exchange = Exchange(send, scope, notes, fields, ticket, decision, counter)
        try:
            await self.app(scope, receive, exchange)
        finally:
            if not exchange.settled:  # an error or a disconnect ended the response early
                await exchange.settle()

    async def _override(self, subject: str, tier: Tier) -> Tier:
        """The tier the override provider gives ``subject``, else ``tier``."""
        assert self.config.overrides is not None
        try:
            result = self.config.overrides(subject)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            logger.warning("rate limit override provider failed, using the tier: %r", exc)
            return tier
        return result if isinstance(result, Tier) else tier

    async def _store_fault(
        self, scope: Scope, receive: Receive, send: Send, exc: StoreUnavailable
    ) -> None:
        """The store did not answer the check: let the request through, or answer 503."""
        mode = "open" if self._fail_open else "closed"
        logger.warning("rate limit store unavailable, failing %s: %s", mode, exc)
        annotate(scope, "aimiddleware.ratelimit.store_error", mode)
        if self._fail_open:
            await self.app(scope, receive, send)
        else:
            await send_unavailable(scope, send)


def _asking_usage(payload: dict[str, Any]) -> bytes:
    """The request body asking for the stream's usage event (``stream_options.include_usage``).

    A stream whose client did not ask for it is asked here: the answer's usage settles the
    reservation, and the usage event is taken out again on the way back (:class:`Exchange`).
    """
    options = payload.get("stream_options")
    asked = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return json.dumps({**payload, "stream_options": asked}).encode()


def _with_fields(send: Send, fields: list[tuple[bytes, bytes]]) -> Send:
    """``send`` adding the limit fields to ``http.response.start`` (nothing to settle)."""

    async def send_with_fields(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *fields]}
        await send(message)

    return send_with_fields
