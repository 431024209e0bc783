"""The middleware's options, validated once."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, Final

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, TracerProvider

from .._asgi import Scope
from ..exceptions import ConfigurationError
from . import _semconv as sc
from ._access_log import ACCESS_LOGGER, AccessLog
from ._http import (
    HEADER_GETTER,
    TRACE_CONTEXT,
    carries_any,
    declared_fields,
    header_lookup,
    read_headers,
)
from ._metrics import Instruments

Hook = Callable[[Span, Scope], None]

# what every field-declaring propagator extracts from a request that carries none of its
# fields (Context is immutable, so one instance serves every request)
EMPTY_CONTEXT: Final = Context()

# the variables opentelemetry-instrumentation-asgi reads, so that one setting covers both
EXCLUDED_URLS_ENV = ("OTEL_PYTHON_ASGI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")


def _excluded_patterns(excluded_urls: str | Iterable[str] | None) -> list[str]:
    if excluded_urls is None:
        for name in EXCLUDED_URLS_ENV:
            value = os.environ.get(name)
            if value:
                excluded_urls = value
                break
        else:
            return []
    if isinstance(excluded_urls, str):
        excluded_urls = excluded_urls.split(",")
    patterns = []
    for pattern in excluded_urls:
        if not isinstance(pattern, str):
            raise ConfigurationError(f"excluded_urls entries must be strings, got {pattern!r}")
        pattern = pattern.strip()
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigurationError(f"excluded_urls: bad pattern {pattern!r}: {exc}") from None
            patterns.append(pattern)
    return patterns


def _access_log(value: bool | str | logging.Logger | AccessLog) -> AccessLog | None:
    if value is False or value is None:
        return None
    if value is True:
        return AccessLog(logging.getLogger(ACCESS_LOGGER))
    if isinstance(value, str) and value:
        return AccessLog(logging.getLogger(value))
    if isinstance(value, logging.Logger):
        return AccessLog(value)
    if isinstance(value, AccessLog):
        return value
    raise ConfigurationError(
        f"access_log must be a bool, a logger name or a logging.Logger, got {value!r}"
    )


def _hook(name: str, value: Any) -> Hook | None:
    if value is not None and not callable(value):
        raise ConfigurationError(f"{name} must be callable(span, scope), got {value!r}")
    return value  # type: ignore[no-any-return]


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
        "propagator",
        "provider_name",
        "request_hook",
        "response_hook",
        "tracer",
    )

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        propagator: TextMapPropagator | None,
        excluded_urls: str | Iterable[str] | None,
        provider_name: str,
        body_limit: int,
        access_log: bool | str | logging.Logger | AccessLog,
        request_hook: Hook | None,
        response_hook: Hook | None,
        capture_content: bool,
        content_limit: int,
        version: str,
    ) -> None:
        if not isinstance(provider_name, str) or not provider_name:
            raise ConfigurationError("provider_name must be a non-empty string")
        if isinstance(body_limit, bool) or not isinstance(body_limit, int) or body_limit < 0:
            raise ConfigurationError(f"body_limit must be an int >= 0, got {body_limit!r}")
        if propagator is not None and not isinstance(propagator, TextMapPropagator):
            raise ConfigurationError(f"propagator must be a TextMapPropagator, got {propagator!r}")
        if not isinstance(capture_content, bool):
            raise ConfigurationError(f"capture_content must be a bool, got {capture_content!r}")
        if (
            isinstance(content_limit, bool)
            or not isinstance(content_limit, int)
            or content_limit < 1
        ):
            raise ConfigurationError(f"content_limit must be an int >= 1, got {content_limit!r}")
        self.capture_content = capture_content
        self.content_limit = content_limit
        self.provider_name = provider_name
        self.body_limit = body_limit
        self.excluded_patterns = _excluded_patterns(excluded_urls)
        self.excluded: Callable[[str], Any] | None = (
            re.compile("|".join(f"(?:{p})" for p in self.excluded_patterns)).search
            if self.excluded_patterns
            else None
        )
        self.access_log = _access_log(access_log)
        self.request_hook = _hook("request_hook", request_hook)
        self.response_hook = _hook("response_hook", response_hook)
        self.propagator = propagator
        # the header names the propagator in use reads, recomputed when the global one changes
        self._fields_of: TextMapPropagator | None = None
        self._fields: frozenset[bytes] | None = None
        self._lookup = header_lookup(None)
        self.tracer = trace.get_tracer("aimiddleware.tracing", version, tracer_provider)
        # read once, like every other option: the names a deployment emits do not change
        self.instruments = Instruments(
            meter_provider, version, previous=sc.emits_previous(os.environ.get(sc.OPT_IN_ENV))
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
