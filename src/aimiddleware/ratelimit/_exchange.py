"""One admitted request on its way back: headers in, usage read, the slot held to the end."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, Final

from .._asgi import ResponseWatcher, is_event_stream, remove_headers
from .._openai import LLMResponse, LLMUsage, cached_tokens, is_usage_only_chunk, usage_tokens
from .._sse import SSEParser
from ..context import AnnotationValue, Message, Scope, Send, set_llm_usage
from ._alerts import report_alert
from ._budgets import format_money
from ._engine import Check, Decision, Outcome
from ._null_usage import drop_null_usage, has_null_usage
from ._plan import Ticket
from ._usage_missing import report_usage_missing

if TYPE_CHECKING:
    from ._counter import Counter

__all__ = ["Exchange"]

# a non-streamed answer is kept (a copy, while it passes) only up to this size to read `usage`
_MAX_JSON_COPY: Final = 4 * 1024 * 1024


class Exchange(ResponseWatcher):
    """Wraps ``send`` for one admitted request that has something to settle afterwards.

    The shared :class:`ResponseWatcher` records what went out (started, status, event stream,
    complete); this adds the rate-limit fields to ``http.response.start``, reads ``usage``
    from a JSON answer or from the stream's events as they pass, renews the slot's lease
    during a long stream, and settles the request's :class:`Ticket` (reconcile tokens,
    release the slot) through the middleware's ``Counter`` as the last body message goes out.
    When the middleware itself asked for ``stream_options.include_usage``, it drops that
    usage-only event and the ``"usage": null`` of every other event, and forwards each
    event's other bytes unchanged, as soon as the event is complete.
    """

    __slots__ = (
        "_copy",
        "_counter",
        "_decision",
        "_fields",
        "_finishing",
        "_notes",
        "_parser",
        "_renew_at",
        "_scope",
        "_ticket",
        "_usage",
        "response",
        "settled",
    )

    def __init__(
        self,
        send: Send,
        scope: Scope,
        notes: dict[str, AnnotationValue],
        fields: list[tuple[bytes, bytes]],
        ticket: Ticket,
        decision: Decision,
        counter: Counter,
    ) -> None:
        # ResponseWatcher's fields, set here rather than through its __init__ (one call less)
        self._send = send
        self.started = self.complete = self.event_stream = False
        self.status = 0
        self._scope = scope
        self._notes = notes  # the request's annotations (get_annotations)
        self._fields = fields
        self._ticket = ticket
        self._decision = decision
        self._counter = counter
        self.settled = False
        self._finishing = False  # the answer's last body message is on its way out
        slot = ticket.slot
        # a stream can outlive the slot's lease: renewed at half-life so it is never lost
        self._renew_at = monotonic() + slot.lease / 2 if slot is not None else math.inf
        self._parser: SSEParser | None = None
        self._copy: bytearray | None = None
        # what a JSON answer states: input, output and cached input tokens
        self._usage: tuple[int | None, int | None, int | None] | None = None
        self.response: LLMResponse | None = None  # what a stream states, event by event

    # what ResponseWatcher.__call__ records, written here so each message costs one call
    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self._renew_at <= monotonic():
                await self._renew()
            if self._parser is not None:
                message = self._watch_stream(message)
            elif self._copy is not None:
                self._keep_copy(message)
            if not message.get("more_body", False):
                self.complete = True
                # settle before the client sees the end: its next request finds the real usage
                self._finishing = True
                await self.settle()
        elif kind == "http.response.start":
            headers = message.get("headers", ())
            # a new message: an app may send the same header list with every response
            message = {**message, "headers": [*headers, *self._fields]}
            self.started = True
            self.status = int(message["status"])
            self.event_stream = is_event_stream(headers)
            if self.event_stream and self._ticket.strip_usage:
                # the body the client gets is shorter than what the app wrote
                remove_headers(message, b"content-length")
            if self._ticket.llm is not None:  # the body comes after: watch it
                if self.event_stream:
                    self._parser = SSEParser()
                    self.response = LLMResponse()
                else:
                    self._copy = bytearray()
        await self._send(message)

    async def _renew(self) -> None:
        slot = self._ticket.slot
        assert slot is not None  # no slot: never due
        self._renew_at = monotonic() + slot.lease / 2
        await self._counter.renew(slot, self._ticket.token)

    async def settle(self) -> None:
        """Reconcile the token reservation to what was produced and release the slot, once."""
        if self.settled:
            return
        self.settled = True
        ticket = self._ticket
        adjustments: list[tuple[Check, Outcome, int]] = []
        split = 0
        if ticket.llm is not None:
            input_tokens, output_tokens, cached = self._charge()
            actual = input_tokens + output_tokens
            self._notes["aimiddleware.ratelimit.tokens_charged"] = actual
            stated = self._stated()
            if stated is not None:
                # for tracing outside: it never sees a usage chunk this middleware removed
                set_llm_usage(self._scope, stated)
            elif self.complete_ok():
                report_usage_missing(self._scope, actual, stream=self.event_stream)
            checks, outcomes = ticket.checks, self._decision.outcomes
            adjustments = [
                (checks[i], outcomes[i], actual)
                for i in ticket.plan.token_positions
                if actual != checks[i].cost
            ]
            split = len(adjustments)
            if ticket.price is not None:
                cost = ticket.price.cost(input_tokens, output_tokens, cached)
                self._notes["aimiddleware.ratelimit.cost_charged"] = format_money(cost)
                plan = ticket.plan
                split += plan.shared_from - plan.budget_positions[0]
                adjustments += [(checks[i], outcomes[i], cost) for i in plan.budget_positions]
        if adjustments or ticket.slot is not None:
            counter = self._counter
            if counter.memory is not None:  # never suspends: not cancellable
                crossed = counter.memory.settle_now(
                    adjustments, ticket.slot, ticket.token, counter.alerts
                )
            else:
                crossed = await counter.settle(adjustments, ticket.slot, ticket.token, split)
            if ticket.price is not None and crossed:
                self._report_alerts(crossed, len(adjustments) - len(ticket.plan.budgets))

    def _report_alerts(self, crossed: list[int], first: int) -> None:
        """Say each alert threshold a budget's total reached for the first time this period."""
        plan = self._ticket.plan
        alerts = self._counter.alerts
        for offset, budget in enumerate(plan.budgets):
            position = crossed[first + offset] if first + offset < len(crossed) else -1
            if position >= 0:
                report_alert(
                    self._scope, budget, alerts[position], self._ticket, self._counter.currency
                )

    def complete_ok(self) -> bool:
        """Whether a successful answer went out whole (the last body message is passing)."""
        return self._finishing and 200 <= self.status < 300

    def _charge(self) -> tuple[int, int, int]:
        """The (input, output, cached input) tokens this request is charged: the answer's
        usage, else what went out."""
        if self._usage is not None:
            stated_in, stated_out, cached = self._usage
            return stated_in or 0, stated_out or 0, cached or 0
        response = self.response
        if response is not None and response.total_tokens is not None:
            return (
                response.input_tokens or 0,
                response.output_tokens or 0,
                response.cached_tokens or 0,
            )
        if not self.started or self.status >= 400:
            return 0, 0, 0  # nothing was produced
        prompt = self._ticket.prompt
        if response is not None:
            # cut short before the usage chunk: the prompt and the chunks that went out
            return prompt, min(self._ticket.estimate - prompt, response.chunks), 0
        return prompt, self._ticket.estimate - prompt, 0

    def _stated(self) -> LLMUsage | None:
        """The usage the answer stated (never an estimate), or ``None``."""
        if self._usage is not None:
            return LLMUsage(*self._usage[:2])
        response = self.response
        if response is None or (response.input_tokens is None and response.output_tokens is None):
            return None
        return LLMUsage(response.input_tokens, response.output_tokens)

    def _watch_stream(self, message: Message) -> Message:
        assert self._parser is not None  # set together with the response
        assert self.response is not None
        body = message.get("body", b"")
        events = self._parser.feed(body) if body else []
        if not self._ticket.strip_usage:
            for event in events:
                self.response.observe_event_data(event.data)
            return message
        kept: list[bytes] = []
        for event in events:
            payload = self.response.observe_event_data(event.data)
            if not is_usage_only_chunk(payload):
                # the "usage": null asking for usage added to every other chunk goes too
                kept.append(drop_null_usage(event.raw) if has_null_usage(payload) else event.raw)
        if not message.get("more_body", False) and self._parser.pending:
            kept.append(self._parser.pending)  # an unterminated last event still goes out
        return {**message, "body": b"".join(kept)}

    def _keep_copy(self, message: Message) -> None:
        copy = self._copy
        assert copy is not None
        body = message.get("body", b"")
        if len(copy) + len(body) > _MAX_JSON_COPY:
            self._copy = None  # too large to be an answer worth parsing; keep the reservation
            return
        if message.get("more_body", False):
            copy += body
            return
        self._copy = None
        # most answers are one message: read that one without copying it
        self._usage = _usage_of(bytes(copy + body) if copy else body)


# the decoder's own scanner: JSONDecoder.raw_decode without its Python-level frame
_Scan = Callable[[str, int], tuple[Any, int]]
_SCAN: Final[_Scan] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _usage_of(body: bytes) -> tuple[int | None, int | None, int | None] | None:
    """The (input, output, cached input) tokens a whole JSON answer states in ``usage``,
    decoding only that object when it can (the answer itself may be long); ``None`` when it
    states neither input nor output."""
    at = body.rfind(b'"usage"')
    if at >= 0:
        try:
            usage, _ = _SCAN(body[body.find(b":", at + 7) + 1 :].decode().lstrip(), 0)
        except (StopIteration, ValueError, UnicodeDecodeError):  # what raw_decode turns
            usage = None  # into a JSONDecodeError (a ValueError)
        if isinstance(usage, dict):
            stated = usage_tokens(usage)
            return None if stated == (None, None) else (*stated, cached_tokens(usage))
    response = LLMResponse()
    response.observe_body(body)  # no usage where expected: the full parse decides
    if response.input_tokens is None and response.output_tokens is None:
        return None
    return response.input_tokens, response.output_tokens, response.cached_tokens
