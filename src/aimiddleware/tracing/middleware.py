"""TracingMiddleware: one OpenTelemetry SERVER span per request, ending at its last byte."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

from .. import __version__
from .._config import build_options
from .._lru import Memo
from .._openai import llm_operation
from ..context import (
    ASGIApp,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    get_annotations,
    read_body,
    request_id,
    route_path,
    set_trace_id,
)
from ._config import Config, tracer_records
from ._continued import REQUEST_ID
from ._exchange import HOOK_FAILED, Exchange
from ._http import CONTENT_LENGTH, HOST, USER_AGENT, method_name, request_attributes
from ._options import GROUPS, TracingOptions

logger = logging.getLogger("aimiddleware.tracing")

# path -> its GenAI operation, for the paths a server is asked for (bounded: clients choose them)
_operation: Memo[str, str | None] = Memo(llm_operation, 1024)


class TracingMiddleware:
    """OpenTelemetry tracing and metrics for HTTP and OpenAI-compatible LLM endpoints.

    One SERVER span per request that ends when the last byte of the response is sent (for a
    stream: at its end, or at the client's disconnect, then with an error status), carrying the
    HTTP and GenAI semantic-convention attributes and the other middlewares' decisions
    (``aimiddleware.*``). Records ``http.server.request.duration``,
    ``gen_ai.server.request.duration``, ``gen_ai.server.time_to_first_token``,
    ``gen_ai.server.time_per_output_token`` and token usage. Needs only ``opentelemetry-api``;
    install and configure an SDK in the application to export anything.

    Mount it outermost::

        from aimiddleware.tracing import TracingMiddleware

        app = TracingMiddleware(app, excluded_urls=["^/health$"], access_log=True)

    The options are those of :class:`TracingOptions`, given by their own names as keywords
    (``capture_content=True``; each goes to its group) or as ``config``. ``excluded_urls`` are
    regular expressions, the OpenTelemetry convention, unlike the path patterns of the other
    middlewares (``docs/tracing.md``).
    """

    def __init__(self, app: ASGIApp, config: TracingOptions | None = None, **options: Any) -> None:
        self.app = app
        self.config = build_options(
            "TracingMiddleware", TracingOptions, config, options, groups=GROUPS
        )
        self._config = Config(self.config, __version__)

    def __repr__(self) -> str:
        config = self._config
        return (
            f"TracingMiddleware(provider_name={config.provider_name!r}, "
            f"body_limit={config.body_limit}, excluded_urls={config.excluded_patterns!r}, "
            f"access_log={config.access_log!r}, capture_content={config.capture_content})"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = self._config
        path = route_path(scope)
        if config.excluded is not None and config.excluded(path):
            await self.app(scope, receive, send)
            return

        try:
            span, parent, found, method = self._start(scope)
        except Exception:
            # a broken propagator or sampler costs this request its span, never its answer
            logger.warning("tracing: starting the span failed; the request goes on", exc_info=True)
            await self.app(scope, receive, send)
            return
        if not (span.is_recording() or config.observed or config.instruments.recording()):
            # the API without an SDK: nothing reads what the request would tell, so only the
            # context goes on (the caller's trace id and baggage, for the app's own calls)
            token = context.attach(trace.set_span_in_context(span, parent))
            try:
                await self.app(scope, receive, send)
            finally:
                context.detach(token)
            return

        get_annotations(scope)  # created here, so that inner middlewares write into this dict
        operation = _operation(path) if method == "POST" else None
        exchange = Exchange(config, scope, span, method, operation, receive, send)
        if config.request_hook is not None:
            try:
                config.request_hook(span, scope)
            except Exception:
                logger.warning(HOOK_FAILED, "the request hook", exc_info=True)

        token = context.attach(trace.set_span_in_context(span, parent))
        error: BaseException | None = None
        try:
            app_receive: Receive = exchange.receive
            length = found[CONTENT_LENGTH]
            if (
                operation is not None
                and length is not None
                and length.isdigit()
                and int(length) <= config.body_limit
            ):
                try:
                    _, app_receive = await read_body(scope, app_receive, limit=config.body_limit)
                except ClientDisconnected:
                    exchange.disconnected = True
                    return  # nobody is left to answer
                exchange.body_read = True  # parsed at the end, when an inner parse may be shared
            await self.app(scope, app_receive, exchange.send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            context.detach(token)
            try:
                exchange.finish(error)
            except Exception:
                logger.warning(HOOK_FAILED, "finishing the span", exc_info=True)

    def _start(self, scope: Scope) -> tuple[Span, Context, list[Any], str]:
        """Extract the parent context, start the span, publish the trace id.

        Returns the span, its parent context, the request headers :func:`~._http.read_headers` found
        (one pass over them) and the method as the conventions name it.
        """
        config = self._config
        parent, found = config.read_request(scope.get("headers") or ())
        method = method_name(scope.get("method", "GET"))
        tracer = config.tracer
        records = config.tracer_records
        if records or (records is None and tracer_records(tracer)):
            attributes = request_attributes(scope, method, found[HOST], found[USER_AGENT])
            attributes[REQUEST_ID] = request_id(scope)
            span = tracer.start_span(
                method, context=parent, kind=SpanKind.SERVER, attributes=attributes
            )
        else:  # the API's no-op tracer: the attributes would only be dropped
            span = tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        span_context = span.get_span_context()
        if span_context.is_valid:
            set_trace_id(scope, format(span_context.trace_id, "032x"))
        return span, parent, found, method
