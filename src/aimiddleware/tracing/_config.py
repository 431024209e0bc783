"""The options, resolved at start-up into what a request needs: the tracer, the instruments,
the exclusions as one regular expression, and the propagator's header names."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, Final

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import NoOpTracer, ProxyTracer, Tracer

from . import _semconv as sc
from ._access_log import AccessLog
from ._http import (
    HEADER_GETTER,
    TRACE_CONTEXT,
    carries_any,
    declared_fields,
    header_lookup,
    read_headers,
)
from ._metrics import Instruments
from ._options import Hook, TracingOptions

__all__ = ["EMPTY_CONTEXT", "Config", "Hook", "tracer_records"]

# what every field-declaring propagator extracts from a request that carries none of its
# fields (Context is immutable, so one instance serves every request)
EMPTY_CONTEXT: Final = Context()


def tracer_records(tracer: Tracer) -> bool:
    """Whether ``tracer`` may record spans: ``False`` for the API's no-op tracer, also behind
    the proxy the API hands out while no SDK is set (checked per request: one may be set later).
    """
    if type(tracer) is ProxyTracer:
        tracer = tracer._tracer  # the SDK's tracer once a provider is set, else the no-op one
    return type(tracer) is not NoOpTracer


class Config:
    """Everything a request needs from the middleware, resolved at start-up."""

    __slots__ = (
        "_fields",
        "_fields_of",
        "_lookup",
        "access_log",
        "body_limit",
        "capture_content",
        "content_limit",
        "excluded",
        "excluded_patterns",
        "instruments",
        "observed",
        "options",
        "propagator",
        "provider_name",
        "request_hook",
        "response_hook",
        "tracer",
        "tracer_records",
    )

    def __init__(self, options: TracingOptions, version: str) -> None:
        self.options = options
        content = options.content
        self.capture_content = content.capture_content
        self.content_limit = content.content_limit
        self.body_limit = content.body_limit
        self.provider_name = options.provider_name
        self.excluded_patterns = list(options.excluded_urls or ())
        self.excluded: Callable[[str], Any] | None = (
            re.compile("|".join(f"(?:{p})" for p in self.excluded_patterns)).search
            if self.excluded_patterns
            else None
        )
        access_log = options.access_log  # an AccessLog or None, once validated
        self.access_log = access_log if isinstance(access_log, AccessLog) else None
        self.request_hook = options.hooks.request_hook
        self.response_hook = options.hooks.response_hook
        telemetry = options.telemetry
        self.propagator = telemetry.propagator
        # the header names the propagator in use reads, recomputed when the global one changes
        self._fields_of: TextMapPropagator | None = None
        self._fields: frozenset[bytes] | None = None
        self._lookup = header_lookup(None)
        self.tracer = trace.get_tracer("aimiddleware.tracing", version, telemetry.tracer_provider)
        # whether the tracer records, or None: the API's proxy, asked per request
        self.tracer_records = (
            None if type(self.tracer) is ProxyTracer else tracer_records(self.tracer)
        )
        # read once, like every other option: the names a deployment emits do not change
        self.instruments = Instruments(
            telemetry.meter_provider,
            version,
            previous=sc.emits_previous(os.environ.get(sc.OPT_IN_ENV)),
        )
        # something reads every request whatever the span and the meters do
        self.observed = (
            self.access_log is not None
            or self.request_hook is not None
            or self.response_hook is not None
        )

    def _current_propagator(self) -> TextMapPropagator:
        propagator = self.propagator
        if propagator is None:
            propagator = propagate.get_global_textmap()
        if propagator is not self._fields_of:
            self._fields = declared_fields(propagator)
            self._lookup = header_lookup(self._fields)
            self._fields_of = propagator
        return propagator

    def extract(self, headers: Any) -> Context:
        """The parent context the caller sent (``traceparent``, ``tracestate``, ``baggage``)."""
        propagator = self._current_propagator()
        if self._fields is not None and not carries_any(headers, self._fields):
            return EMPTY_CONTEXT  # nothing to find: the same context, without a scan per propagator
        return propagator.extract(headers, getter=HEADER_GETTER)

    def read_request(self, headers: Any) -> tuple[Context, list[Any]]:
        """The parent context and the headers :func:`~._http.read_headers` finds, in one pass."""
        propagator = self._current_propagator()
        found = read_headers(headers, self._lookup)
        if self._fields is not None and found[TRACE_CONTEXT] is None:
            return EMPTY_CONTEXT, found
        return propagator.extract(headers, getter=HEADER_GETTER), found
