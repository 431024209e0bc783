"""The benchmark configurations: one trivial OpenAI-shaped JSON endpoint, wrapped differently.

Every configuration is a :class:`Config`: a name and a factory returning an ASGI app. Each
middleware's ``configs_*`` module lists its own in ``CONFIGS``, :mod:`benchmarks.registry` names
every one of them by name, and the harness measures them interleaved with ``bare``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ASGIApp = Any

REQUEST_BODY = json.dumps(
    {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 16,
    }
).encode()

RESPONSE_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "SmolLM2-135M-Instruct",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }
).encode()


async def chat_completions(request: Request) -> Response:
    await request.body()  # a real endpoint reads its body
    return Response(RESPONSE_BODY, media_type="application/json")


def bare_app() -> ASGIApp:
    """Bare Starlette: the baseline every ratio is taken against."""
    return Starlette(routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"])])


@dataclass(frozen=True)
class Config:
    """One measured configuration.

    ``headers`` are sent with every request; ``lua`` is an optional wrk script body that replaces
    the default request (for per-request headers such as fresh idempotency keys).
    ``needs`` names services the harness must start first (``"redis"``).
    ``body`` replaces the default request body (the payload-size series sends 1 KB to 1 MB).
    ``path`` is the request path.
    ``connections`` overrides the harness's connection count (long streams need fewer to
    complete enough requests in a short measurement).
    ``fresh_keys`` says that every request carries a new ``Idempotency-Key`` (its ``lua`` sends
    them; the in-process drivers add them).
    ``requires`` lists ``module:name`` targets the factory needs (a peer package, a middleware);
    where one cannot be imported, the configuration is listed as unavailable, not measured.
    ``fallback`` marks a stand-in (the peers of the stack module): a configuration of the same
    name from another module replaces it.
    """

    name: str
    factory: Callable[[], ASGIApp]
    group: str = "baseline"
    headers: dict[str, str] = field(default_factory=dict)
    lua: str | None = None
    needs: tuple[str, ...] = ()
    description: str = ""
    body: bytes | None = None
    path: str = "/v1/chat/completions"
    connections: int | None = None
    fresh_keys: bool = False
    requires: tuple[str, ...] = ()
    fallback: bool = False

    @property
    def request_body(self) -> bytes:
        return REQUEST_BODY if self.body is None else self.body


def missing(targets: tuple[str, ...]) -> str | None:
    """Why ``module:name`` targets cannot be imported, or None when all of them can."""
    for target in targets:
        module, _, name = target.partition(":")
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            return f"not available yet: {type(exc).__name__}: {exc}"
    return None


def sdk_providers() -> tuple[Any, Any]:
    """The OpenTelemetry SDK sampling everything, exporting to nowhere: the cost measured is
    the instrumentation and the SDK, not a network."""
    from collections.abc import Sequence

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    class DropExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider(sampler=ALWAYS_ON)
    tracer_provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])
