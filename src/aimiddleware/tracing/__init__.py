"""OpenTelemetry tracing for AI-facing APIs: one span per request that covers the whole stream.

Needs the ``otel`` extra (``pip install 'aimiddleware[otel]'``)::

    from aimiddleware.tracing import TracingMiddleware

    app = TracingMiddleware(app, access_log=True)
"""

from __future__ import annotations

from ._access_log import ACCESS_LOGGER, AccessLog
from ._options import ContentOptions, Hook, HookOptions, TelemetryOptions, TracingOptions
from .middleware import TracingMiddleware

__all__ = [
    "ACCESS_LOGGER",
    "AccessLog",
    "ContentOptions",
    "Hook",
    "HookOptions",
    "TelemetryOptions",
    "TracingMiddleware",
    "TracingOptions",
]
