"""One admitted request on its way back: headers in, usage read, the slot held to the end."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from .._asgi import Message, Send, is_event_stream, remove_headers
from .._openai import LLMResponse, is_usage_only_chunk
from .._sse import SSEParser
from ..exceptions import StoreUnavailable
from ._engine import Engine, Slot

__all__ = ["Exchange"]

logger = logging.getLogger("aimiddleware.ratelimit")

# a non-streamed answer is kept (a copy, while it passes) only up to this size to read `usage`
_MAX_JSON_COPY: Final = 4 * 1024 * 1024


class Exchange:
    """Wraps ``send`` for one request.

    Adds the rate-limit fields to ``http.response.start``; reads ``usage`` from a JSON answer
    or from the stream's events as they pass; when the middleware itself asked for
    ``stream_options.include_usage``, drops that usage-only event and forwards every other
    event's raw bytes unchanged, as soon as the event is complete.
    """

    __slots__ = (
        "_copy",
        "_engine",
        "_fields",
        "_last_renewal",
        "_on_complete",
        "_parser",
        "_send",
        "_slot",
        "_token",
        "event_stream",
        "llm",
        "response",
        "started",
        "status",
        "strip_usage",
    )

    def __init__(
        self,
        send: Send,
        fields: list[tuple[bytes, bytes]],
        *,
        llm: bool,
        strip_usage: bool,
        engine: Engine,
        slot: Slot | None,
        token: str,
        on_complete: Callable[[], Awaitable[None]],
    ) -> None:
        self._send = send
        self._on_complete = on_complete
        self._fields = fields
        self.llm = llm
        self.strip_usage = strip_usage
        self._engine = engine
        self._slot = slot
        self._token = token
        self._last_renewal = time.monotonic()
        self._parser: SSEParser | None = None
        self._copy: bytearray | None = None
        self.response = LLMResponse()
        self.started = False
        self.event_stream = False
        self.status = 0

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            self.status = int(message["status"])
            headers = message.get("headers", ())
            self.event_stream = is_event_stream(headers)
            # a new message: an app may send the same header list with every response
            message = {**message, "headers": [*headers, *self._fields]}
            if self.llm and self.event_stream:
                self._parser = SSEParser()
                if self.strip_usage:
                    # the body the client gets is shorter than what the app wrote
                    remove_headers(message, b"content-length")
            elif self.llm:
                self._copy = bytearray()
        elif kind == "http.response.body":
            await self._renew_if_due()
            if self._parser is not None:
                message = self._watch_stream(message)
            elif self._copy is not None:
                self._keep_copy(message)
            if not message.get("more_body", False):
                # settle before the client sees the end: its next request finds the real usage
                await self._on_complete()
        await self._send(message)

    def _watch_stream(self, message: Message) -> Message:
        assert self._parser is not None  # set together with the event-stream flag
        body = message.get("body", b"")
        events = self._parser.feed(body) if body else []
        if not self.strip_usage:
            for event in events:
                self.response.observe_event_data(event.data)
            return message
        kept: list[bytes] = []
        for event in events:
            payload = self.response.observe_event_data(event.data)
            if not is_usage_only_chunk(payload):
                kept.append(event.raw)
        if not message.get("more_body", False) and self._parser.pending:
            kept.append(self._parser.pending)  # an unterminated last event still goes out
        return {**message, "body": b"".join(kept)}

    def _keep_copy(self, message: Message) -> None:
        assert self._copy is not None
        body = message.get("body", b"")
        if len(self._copy) + len(body) > _MAX_JSON_COPY:
            self._copy = None  # too large to be an answer worth parsing; keep the reservation
            return
        self._copy += body
        if not message.get("more_body", False):
            _observe_usage(self.response, bytes(self._copy))
            self._copy = None

    async def _renew_if_due(self) -> None:
        # a stream can outlive the slot's lease; renew at half-life so it is never lost
        slot = self._slot
        if slot is None:
            return
        now = time.monotonic()
        if now - self._last_renewal < slot.lease / 2:
            return
        self._last_renewal = now
        try:
            await self._engine.renew(slot, self._token)
        except StoreUnavailable as exc:
            logger.warning("rate limit slot renewal failed, the lease may lapse: %s", exc)

    def usage(self) -> int | None:
        """The tokens the answer says it used, or ``None`` when it said nothing."""
        response = self.response
        if response.input_tokens is None and response.output_tokens is None:
            return None
        return (response.input_tokens or 0) + (response.output_tokens or 0)


_DECODER: Final = json.JSONDecoder()


def _observe_usage(response: LLMResponse, body: bytes) -> None:
    """Read ``usage`` from a whole JSON answer, decoding only that object when it can."""
    at = body.rfind(b'"usage"')
    if at >= 0:
        colon = body.find(b":", at + 7)
        try:
            text = body[colon + 1 :].decode("utf-8").lstrip()
            usage, _ = _DECODER.raw_decode(text)
        except (ValueError, UnicodeDecodeError):
            usage = None
        if isinstance(usage, dict):
            response.observe({"usage": usage})
            return
    response.observe_body(body)  # no usage where expected: the full parse decides
