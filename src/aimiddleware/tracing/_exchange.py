"""One request's span, watched ``send``/``receive`` and end-of-response bookkeeping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter, time_ns
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode

from .._asgi import (
    Message,
    Receive,
    Scope,
    Send,
    get_annotations,
    get_header,
    json_body,
    media_type,
)
from .._openai import LLMRequest, LLMResponse
from .._paths import route_template
from ..principal import get_principal
from . import _semconv as sc
from ._content import INPUT_MESSAGES, OUTPUT_MESSAGES, OutputCollector, as_attribute, input_messages
from ._scan import BodyScan, StreamScan
from ._usage import NO_USAGE, USAGE_REPLAYED, resolve_usage

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
        "parent",
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
        parent: Context,
        method: str,
        operation: str | None,
        receive: Receive,
        send: Send,
    ) -> None:
        self.config = config
        self.scope = scope
        self.span = span
        self.parent = parent
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
        self.llm: LLMRequest | None = None
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
            await self._forward(message)
            return
        await self._forward(message)
        if (
            kind == "http.response.trailers" and not message.get("more_trailers", False)
        ) or kind == "http.response.pathsend":
            self._completed()

    async def _forward(self, message: Message) -> None:
        try:
            await self._send(message)
        except OSError:
            # the server could not write: the client has gone
            self.disconnected = True
            raise

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
        """
        if self.end_ns is None:
            self.end_ns = time_ns()
            self.end_perf = perf_counter()
        duration = self.end_perf - self.started
        error_type = self.error_type(exc)
        route = route_template(self.scope, self.root_path)
        response = self.llm_response()
        if self.operation is not None:
            self.usage = resolve_usage(self.scope, response)
        ttft = self.stream_scan.ttft if self.stream_scan is not None else None
        config = self.config
        span = self.span

        if span.is_recording():
            try:
                self._annotate_span(exc, error_type, route, response, ttft)
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
        try:
            self._record_metrics(error_type, route, response, ttft, duration)
        except Exception:
            logger.warning(HOOK_FAILED, "recording metrics", exc_info=True)
        if config.access_log is not None:
            try:
                config.access_log.write(self, error_type, route, response, ttft, duration)
            except Exception:
                logger.warning(HOOK_FAILED, "writing the access log", exc_info=True)

    def _annotate_span(
        self,
        exc: BaseException | None,
        error_type: str | None,
        route: str | None,
        response: LLMResponse | None,
        ttft: float | None,
    ) -> None:
        # one dict, one set_attributes: the SDK takes its lock and cleans values once
        span = self.span
        attributes: dict[str, Any] = {}
        if self.status:
            attributes[sc.HTTP_RESPONSE_STATUS_CODE] = self.status
        if route is not None:
            attributes[sc.HTTP_ROUTE] = route
            span.update_name(f"{self.method} {route}")
        if self.operation is not None:
            attributes[sc.GEN_AI_OPERATION_NAME] = self.operation
            attributes[sc.GEN_AI_PROVIDER_NAME] = self.config.provider_name
            llm = self.llm
            if llm is not None:
                if llm.model is not None:
                    attributes[sc.GEN_AI_REQUEST_MODEL] = llm.model
                if llm.max_tokens is not None:
                    attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] = llm.max_tokens
                if llm.temperature is not None:
                    attributes[sc.GEN_AI_REQUEST_TEMPERATURE] = llm.temperature
                if llm.top_p is not None:
                    attributes[sc.GEN_AI_REQUEST_TOP_P] = llm.top_p
                attributes[sc.GEN_AI_REQUEST_STREAM] = llm.stream
            if response is not None:
                if response.id is not None:
                    attributes[sc.GEN_AI_RESPONSE_ID] = response.id
                if response.model is not None:
                    attributes[sc.GEN_AI_RESPONSE_MODEL] = response.model
                if response.finish_reasons:
                    # a tuple of str: the SDK keeps it as it is instead of converting a list
                    attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] = tuple(response.finish_reasons)
            usage = self.usage
            if usage.input_tokens is not None:
                attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
            if usage.output_tokens is not None:
                attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
            if usage.replayed:
                attributes[USAGE_REPLAYED] = True
            if ttft is not None:
                attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttft
            if self.config.capture_content:
                self._content(attributes, self.operation)
        principal = get_principal(self.scope)
        if principal is not None:
            # what an auth middleware did not annotate itself, in the names OAuthMiddleware uses
            attributes[PRINCIPAL_ID] = principal.id
            if principal.client_id is not None:
                attributes[PRINCIPAL_CLIENT_ID] = principal.client_id
            if principal.tier is not None:
                attributes[PRINCIPAL_TIER] = principal.tier
            if principal.scopes:
                attributes[PRINCIPAL_SCOPES] = " ".join(sorted(principal.scopes))
        annotations = get_annotations(self.scope)
        if annotations:
            attributes.update(annotations)
        if error_type is not None:
            attributes[sc.ERROR_TYPE] = error_type
        span.set_attributes(attributes)
        if exc is not None:
            span.record_exception(exc)
        if error_type is not None:
            description = None if exc is None else f"{type(exc).__name__}: {exc}"
            span.set_status(Status(StatusCode.ERROR, description or error_type))

    def _content(self, attributes: dict[str, Any], operation: str) -> None:
        limit = self.config.content_limit
        prompt = as_attribute(input_messages(operation, json_body(self.scope), limit))
        if prompt is not None:
            attributes[INPUT_MESSAGES] = prompt
        if self.collector is not None:
            output = as_attribute(self.collector.messages())
            if output is not None:
                attributes[OUTPUT_MESSAGES] = output

    def _record_metrics(
        self,
        error_type: str | None,
        route: str | None,
        response: LLMResponse | None,
        ttft: float | None,
        duration: float,
    ) -> None:
        scope = self.scope
        instruments = self.config.instruments
        # the context the measurements are made in, looked up once rather than per record
        current = otel_context.get_current()
        instruments.record_http(
            duration,
            (
                self.method,
                scope.get("scheme", "http"),
                scope.get("http_version"),
                self.status,
                route,
                error_type,
            ),
            current,
        )
        if self.operation is None:
            return
        llm = self.llm
        instruments.record_llm(
            (
                self.operation,
                self.config.provider_name,
                llm.model if llm is not None else None,
                response.model if response is not None else None,
                error_type,
            ),
            current,
            duration=duration,
            ttft=ttft,
            input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens,
        )


PRINCIPAL_ID = "aimiddleware.auth.principal"
PRINCIPAL_CLIENT_ID = "aimiddleware.auth.client_id"
PRINCIPAL_TIER = "aimiddleware.auth.tier"
PRINCIPAL_SCOPES = "aimiddleware.auth.scopes"
