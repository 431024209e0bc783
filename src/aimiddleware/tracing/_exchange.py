"""One request's span, watched ``send``/``receive`` and end-of-response bookkeeping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter, time_ns
from typing import TYPE_CHECKING, Final

from opentelemetry.trace import Span

from .._asgi import get_header, media_type
from .._openai import LLMResponse
from .._paths import route_template
from ..context import Message, Receive, Scope, Send, get_continuation
from ._content import OutputCollector
from ._continued import follow
from ._ending import annotate_span, record_metrics
from ._request import GenAIRequest, llm_request
from ._scan import BodyScan, StreamScan
from ._usage import NO_USAGE, resolve_usage

if TYPE_CHECKING:
    from ._config import Config

logger = logging.getLogger("aimiddleware.tracing")

CLIENT_DISCONNECTED = "client_disconnected"
INCOMPLETE_RESPONSE = "incomplete_response"
STREAM_ERROR = "stream_error"


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


# the Content-Type values frameworks write, spared the parsing of parameters and case
_MEDIA_TYPES: Final = {
    value: media_type(value)
    for value in (
        b"application/json",
        b"application/json; charset=utf-8",
        b"text/event-stream",
        b"text/event-stream; charset=utf-8",
    )
}

# one line per failure of telemetry code, which must never break a request
HOOK_FAILED: Final = "tracing: %s failed; the request goes on"


class Exchange:
    """Per-request state. ``send``/``receive`` are handed to the app in place of the server's."""

    __slots__ = (
        "_receive",
        "_send",
        "body_read",
        "body_scan",
        "collector",
        "complete",
        "config",
        "disconnected",
        "end_ns",
        "end_perf",
        "feed",
        "llm",
        "method",
        "operation",
        "root_path",
        "scope",
        "span",
        "started",
        "status",
        "stream_scan",
        "trailers",
        "usage",
    )

    def __init__(
        self,
        config: Config,
        scope: Scope,
        span: Span,
        method: str,
        operation: str | None,
        receive: Receive,
        send: Send,
    ) -> None:
        self.config = config
        self.scope = scope
        self.span = span
        self.method = method
        self.operation = operation
        self.root_path: str = scope.get("root_path", "")
        self._receive = receive
        self._send = send
        self.started = perf_counter()
        self.status = 0
        self.complete = False
        self.disconnected = False
        self.end_ns: int | None = None
        self.end_perf = 0.0
        self.llm: GenAIRequest | None = None
        self.body_read = False  # the request body was read: the GenAI request fields are known
        self.stream_scan: StreamScan | None = None
        self.body_scan: BodyScan | None = None
        self.collector: OutputCollector | None = None
        self.feed: Callable[[bytes], None] | None = None  # the scan's, while one reads the body
        self.trailers = False
        self.usage = NO_USAGE  # what the request is known by, once finished

    # -- the watched channels ------------------------------------------------------------

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.complete:
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            # the per-chunk path of a stream: kept to a few attribute reads and one scan
            feed = self.feed
            if feed is not None and (body := message.get("body")):
                try:
                    # Starlette passes memoryview chunks through as they are
                    feed(body if type(body) is bytes else bytes(body))
                except Exception:
                    # telemetry must not break the response: stop reading this one, say so once
                    logger.warning(HOOK_FAILED, "scanning the response", exc_info=True)
                    self.feed = self.stream_scan = self.body_scan = None
            try:
                await self._send(message)
            except OSError:
                self.disconnected = True  # the server could not write: the client has gone
                raise
            if not message.get("more_body", False) and not self.trailers:
                self._completed()
            return
        if kind == "http.response.start":
            self.status = int(message["status"])
            if self.operation is not None:
                self._watch(message)
            self.trailers = bool(message.get("trailers", False))
        try:
            await self._send(message)
        except OSError:
            self.disconnected = True  # the server could not write: the client has gone
            raise
        if (
            kind == "http.response.trailers" and not message.get("more_trailers", False)
        ) or kind == "http.response.pathsend":
            self._completed()

    def _watch(self, start: Message) -> None:
        raw = get_header(start.get("headers", ()), b"content-type")
        kind = _MEDIA_TYPES.get(raw) if raw is not None else ""
        if kind is None:
            kind = media_type(raw)
        if self.config.capture_content:
            self.collector = OutputCollector(self.config.content_limit)
        if kind == "text/event-stream":
            self.stream_scan = StreamScan(started=self.started, collector=self.collector)
            self.feed = self.stream_scan.feed
        elif kind == "application/json" or kind.endswith("+json"):
            self.body_scan = BodyScan(limit=self.config.body_limit)
            self.feed = self.body_scan.feed

    def _completed(self) -> None:
        if self.end_ns is None:
            self.end_ns = time_ns()
            self.end_perf = perf_counter()
        self.complete = True

    # -- the end ---------------------------------------------------------------------------

    def error_type(self, exc: BaseException | None) -> str | None:
        if self.disconnected and not self.complete:
            return CLIENT_DISCONNECTED
        if exc is not None:
            return _type_name(exc)
        if not self.complete:
            return INCOMPLETE_RESPONSE
        if self.status >= 500:
            return str(self.status)
        if self.stream_scan is not None and self.stream_scan.response.error and self.status < 400:
            return STREAM_ERROR
        return None

    def llm_response(self) -> LLMResponse | None:
        if self.stream_scan is not None:
            return self.stream_scan.response
        if self.body_scan is not None:
            return self.body_scan.result(self.collector)
        return None

    def finish(self, exc: BaseException | None) -> None:
        """End the span at the last byte (or now), then record metrics and the access log.

        Each step is guarded on its own: a failing hook, processor or handler costs its own
        output (one log line), never the steps after it nor the request.

        When the app goes on after the client left (:func:`~aimiddleware.context.get_continuation`),
        the span ends when the client left, and a child span covers the rest (:mod:`._continued`).
        """
        continued = get_continuation(self.scope)
        if self.end_ns is None:
            if continued is not None:  # the exchange ended when the client left
                self.end_ns = continued.started_ns
                self.end_perf = continued.started_perf
            else:
                self.end_ns = time_ns()
                self.end_perf = perf_counter()
        duration = self.end_perf - self.started
        error_type = self.error_type(exc)
        route = route_template(self.scope, self.root_path)
        response = self.llm_response()
        if self.operation is not None:
            if self.body_read:
                self.llm = llm_request(self.scope)
            self.usage = resolve_usage(self.scope, response)
        ttft = self.stream_scan.ttft if self.stream_scan is not None else None
        config = self.config
        span = self.span

        recording = span.is_recording()
        if recording:
            try:
                annotate_span(self, exc, error_type, route, response, ttft)
            except Exception:
                logger.warning(HOOK_FAILED, "setting span attributes", exc_info=True)
            if config.response_hook is not None:
                try:
                    config.response_hook(span, self.scope)
                except Exception:
                    logger.warning(HOOK_FAILED, "the response hook", exc_info=True)
        try:
            span.end(end_time=self.end_ns)
        except Exception:
            logger.warning(HOOK_FAILED, "ending the span", exc_info=True)
        if continued is not None and recording:
            try:
                follow(config, self.scope, span, continued)
            except Exception:
                logger.warning(HOOK_FAILED, "following the work after it", exc_info=True)
        try:
            record_metrics(self, error_type, route, response, ttft, duration)
        except Exception:
            logger.warning(HOOK_FAILED, "recording metrics", exc_info=True)
        if config.access_log is not None:
            try:
                config.access_log.write(self, error_type, route, response, ttft, duration)
            except Exception:
                logger.warning(HOOK_FAILED, "writing the access log", exc_info=True)
