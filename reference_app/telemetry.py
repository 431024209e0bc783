"""OpenTelemetry for the reference app, configured the OpenTelemetry way: by environment.

Nothing is exported unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the per-signal
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``..._METRICS_ENDPOINT``) is set. Then spans go
through a batch processor and metrics through a periodic reader to an OTLP exporter over
HTTP/protobuf (default) or gRPC, per ``OTEL_EXPORTER_OTLP_PROTOCOL``. The SDK itself reads the
rest: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (resource),
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (sampling), ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_BSP_*`` and ``OTEL_METRIC_EXPORT_INTERVAL``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("reference_app")

DEFAULT_SERVICE_NAME = "aimiddleware-reference"
# traced unless OTEL_PYTHON_EXCLUDED_URLS says otherwise: a health probe every second would
# drown the interesting traces
DEFAULT_EXCLUDED_URLS = ("^/health$",)


@dataclass
class Telemetry:
    """The providers the tracing middleware records into (``None``: the global, no-op ones)."""

    tracer_provider: Any = None
    meter_provider: Any = None
    excluded_urls: tuple[str, ...] | None = DEFAULT_EXCLUDED_URLS
    _shutdown: list[Any] = field(default_factory=list, repr=False)

    def shutdown(self) -> None:
        """Flush and stop the exporters (called when the server stops)."""
        for provider in self._shutdown:
            try:
                provider.shutdown()
            except Exception:
                logger.warning("telemetry: shutting down %r failed", provider, exc_info=True)
        self._shutdown.clear()


def _protocol(env: Mapping[str, str], signal: str) -> str:
    value = env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    value = value.strip().lower()
    if value not in ("http/protobuf", "grpc"):
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={value!r}: this server speaks http/protobuf or grpc"
        )
    return value


def _span_exporter(protocol: str) -> Any:
    # the exporters read their endpoint, headers, timeout and compression from the environment
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    return HTTPSpanExporter()


def _metric_exporter(protocol: str) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HTTPMetricExporter,
    )

    return HTTPMetricExporter()


def setup_telemetry() -> Telemetry:
    """Providers exporting over OTLP when an endpoint is configured, else the no-op defaults.

    Everything comes from ``os.environ``, as the SDK and the exporters read it::

        telemetry = setup_telemetry()
        app = TracingMiddleware(app, tracer_provider=telemetry.tracer_provider, ...)
    """
    env = os.environ
    excluded = (
        None
        if any(
            env.get(name)
            for name in ("OTEL_PYTHON_ASGI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS")
        )
        else DEFAULT_EXCLUDED_URLS
    )
    traces = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    metrics = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
    )
    if not traces and not metrics:
        return Telemetry(excluded_urls=excluded)

    from opentelemetry.sdk.resources import OTELResourceDetector, Resource

    # OTEL_RESOURCE_ATTRIBUTES and then OTEL_SERVICE_NAME win over our default name
    resource = Resource({"service.name": DEFAULT_SERVICE_NAME}).merge(
        OTELResourceDetector().detect()
    )
    if env.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource({"service.name": env["OTEL_SERVICE_NAME"]}))
    telemetry = Telemetry(excluded_urls=excluded)
    if traces:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # the sampler comes from OTEL_TRACES_SAMPLER(_ARG): parent-based always-on by default
        telemetry.tracer_provider = TracerProvider(resource=resource)
        telemetry.tracer_provider.add_span_processor(
            BatchSpanProcessor(_span_exporter(_protocol(env, "TRACES")))
        )
        telemetry._shutdown.append(telemetry.tracer_provider)
    if metrics:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(_metric_exporter(_protocol(env, "METRICS")))
        telemetry.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        telemetry._shutdown.append(telemetry.meter_provider)
    logger.info(
        "telemetry: exporting %s over OTLP as %s",
        " and ".join(n for n, on in (("traces", traces), ("metrics", metrics)) if on),
        resource.attributes.get("service.name"),
    )
    return telemetry


class ShutdownTelemetry:
    """Flushes the exporters when the server's lifespan ends (pure ASGI pass-through otherwise)."""

    def __init__(self, app: Any, *, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_(message: Any) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                import asyncio

                # the final export blocks on the network: off the event loop
                await asyncio.to_thread(self.telemetry.shutdown)
            await send(message)

        await self.app(scope, receive, send_)
