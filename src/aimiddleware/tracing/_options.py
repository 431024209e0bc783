"""The options of :class:`~aimiddleware.tracing.TracingMiddleware`, validated once.

They come in groups: where telemetry goes (:class:`TelemetryOptions`), what of the bodies is read
and recorded (:class:`ContentOptions`) and the hooks (:class:`HookOptions`). The middleware also
takes every option by its own name, as it always has; :meth:`TracingOptions.of` sorts them into
their groups.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.metrics import MeterProvider
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, TracerProvider

from .._config import check_bool, check_int, check_text, group_options
from ..context import Scope
from ..exceptions import ConfigurationError
from ._access_log import ACCESS_LOGGER, AccessLog

__all__ = ["ContentOptions", "Hook", "HookOptions", "TelemetryOptions", "TracingOptions"]

Hook = Callable[[Span, Scope], None]

# the variables opentelemetry-instrumentation-asgi reads, so that one setting covers both
EXCLUDED_URLS_ENV: Final = ("OTEL_PYTHON_ASGI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")


@dataclass(frozen=True, slots=True)
class TelemetryOptions:
    """Where spans and metrics go, and how the caller's trace context is read (each ``None``:
    the global one, looked up when used, so an SDK set up after the middleware is still used)."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    propagator: TextMapPropagator | None = None

    def __post_init__(self) -> None:
        propagator = self.propagator
        if propagator is not None and not isinstance(propagator, TextMapPropagator):
            raise ConfigurationError(f"propagator must be a TextMapPropagator, got {propagator!r}")


@dataclass(frozen=True, slots=True)
class ContentOptions:
    """What of the bodies of LLM routes is read, and what of the users' text is recorded.

    :param body_limit: request bodies up to this many bytes (by Content-Length) and JSON
        response bodies up to it are read for the GenAI attributes.
    :param capture_content: record prompts and generated text (the users' data: off by default).
    :param content_limit: characters of text kept in each of the two content attributes.
    """

    body_limit: int = 1_048_576
    capture_content: bool = False
    content_limit: int = 8192

    def __post_init__(self) -> None:
        check_int("body_limit", self.body_limit, minimum=0)
        check_bool("capture_content", self.capture_content)
        check_int("content_limit", self.content_limit, minimum=1)


@dataclass(frozen=True, slots=True)
class HookOptions:
    """``hook(span, scope)`` after the span starts, and just before it ends."""

    request_hook: Hook | None = None
    response_hook: Hook | None = None

    def __post_init__(self) -> None:
        for name in ("request_hook", "response_hook"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigurationError(f"{name} must be callable(span, scope), got {value!r}")


def excluded_patterns(excluded_urls: str | Iterable[str] | None) -> tuple[str, ...]:
    """The regular expressions of ``excluded_urls`` (``None``: the OpenTelemetry variables)."""
    if excluded_urls is None:
        excluded_urls = next((os.environ[n] for n in EXCLUDED_URLS_ENV if os.environ.get(n)), "")
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
    return tuple(patterns)


def access_logger(value: bool | str | logging.Logger | AccessLog | None) -> AccessLog | None:
    """The access log ``access_log`` names, or ``None`` when it is off."""
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


@dataclass(frozen=True, slots=True)
class TracingOptions:
    """Everything :class:`~aimiddleware.tracing.TracingMiddleware` does, in groups.

    >>> options = TracingOptions.of(excluded_urls="^/health$", capture_content=True)
    >>> options.excluded_urls, options.content.capture_content
    (('^/health$',), True)

    :param excluded_urls: regular expressions searched in the route path; matching requests are
        not traced. ``None`` reads ``OTEL_PYTHON_ASGI_EXCLUDED_URLS`` or
        ``OTEL_PYTHON_EXCLUDED_URLS`` (comma-separated). Kept as the tuple of patterns.
    :param provider_name: the ``gen_ai.provider.name`` to report.
    :param access_log: ``True`` for the ``aimiddleware.access`` logger, a logger name or a
        :class:`logging.Logger`; kept as the :class:`AccessLog` it names, or ``None``.
    """

    telemetry: TelemetryOptions = TelemetryOptions()
    excluded_urls: str | Iterable[str] | None = None
    provider_name: str = "openai"
    access_log: bool | str | logging.Logger | AccessLog = False
    content: ContentOptions = ContentOptions()
    hooks: HookOptions = HookOptions()

    def __post_init__(self) -> None:
        for name, group in GROUPS.items():
            if not isinstance(getattr(self, name), group):
                raise ConfigurationError(f"{name} must be a {group.__name__}")
        object.__setattr__(self, "excluded_urls", excluded_patterns(self.excluded_urls))
        check_text("provider_name", self.provider_name, one_line=False)
        object.__setattr__(self, "access_log", access_logger(self.access_log))

    @classmethod
    def of(cls, **options: Any) -> TracingOptions:
        """The options given by their own names (``capture_content=True``), each put in its
        group; a group may also be given whole (``content=ContentOptions(...)``)."""
        return cls(**group_options("TracingOptions", options, GROUPS))


GROUPS: Final[dict[str, type[Any]]] = {
    "telemetry": TelemetryOptions,
    "content": ContentOptions,
    "hooks": HookOptions,
}
