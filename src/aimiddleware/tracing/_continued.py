"""The span of the work a request goes on with after its client left.

The request's SERVER span ends when its client leaves: it describes the HTTP exchange, as the
HTTP conventions and ``http.server.request.duration`` do. When a middleware keeps the app
running past that (``IdempotencyMiddleware`` records the answer the client may retry for), the
work gets a span of its own: an INTERNAL child of the request's span, in the same trace, from
the moment the client left to the end of the work, carrying the decisions made meanwhile (the
``recorded`` outcome, the tokens the rate limiter charged) and the usage the model stated.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ..context import Continuation, Scope, get_annotations, get_llm_usage, request_id
from . import _semconv as sc
from ._config import Config

__all__ = ["follow"]

logger = logging.getLogger("aimiddleware.tracing")

#: the span attribute naming the request id (an attribute name, like the annotations)
REQUEST_ID = "aimiddleware.request_id"


def follow(config: Config, scope: Scope, parent: Span, work: Continuation) -> None:
    """Start the span of ``work`` (a child of ``parent``, from when the client left), to end
    with the work."""
    span = config.tracer.start_span(
        work.name,
        context=trace.set_span_in_context(parent),
        kind=SpanKind.INTERNAL,
        attributes={REQUEST_ID: request_id(scope)},
        start_time=work.started_ns,
    )
    work.on_end(lambda ended: _end(span, scope, ended))


def _end(span: Span, scope: Scope, work: Continuation) -> None:
    try:
        attributes: dict[str, Any] = dict(get_annotations(scope))
        usage = get_llm_usage(scope)
        if usage is not None:
            if usage.input_tokens is not None:
                attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
            if usage.output_tokens is not None:
                attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
        error = work.error
        if error is not None:
            cls = type(error)
            name = cls.__qualname__
            attributes[sc.ERROR_TYPE] = (
                name if cls.__module__ == "builtins" else f"{cls.__module__}.{name}"
            )
        span.set_attributes(attributes)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    except Exception:
        logger.warning("tracing: %s failed; the request goes on", "ending a span", exc_info=True)
    span.end(end_time=work.ended_ns)
