"""Over a real socket: uvicorn on loopback, httpx as the client, OTLP/HTTP to a receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aimiddleware.tracing import TracingMiddleware

from ..live import wait_for
from .apps import SECRET_HEADERS, SECRETS, WORDS, chat_app, chat_request, serving
from .conftest import Telemetry

HEADERS = {k.decode(): v.decode() for k, v in SECRET_HEADERS}


def test_a_streamed_chat_over_a_socket_is_one_span(telemetry: Telemetry) -> None:
    app = TracingMiddleware(
        chat_app(delay=0.005),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    with serving(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        events = []
        with client.stream(
            "POST", "/v1/chat/completions", content=chat_request(stream=True), headers=HEADERS
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
        received_all = time.time_ns()
        wait_for(lambda: len(telemetry.spans()) == 1)

    assert len(events) == len(WORDS) + 3
    span = telemetry.span()
    assert span.end_time is not None
    assert span.end_time <= received_all
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.usage.output_tokens"] == len(WORDS)
    assert attributes["client.address"] == "127.0.0.1"
    assert attributes["server.port"] == port


def test_a_client_that_hangs_up_mid_stream_gives_an_error_span(telemetry: Telemetry) -> None:
    app = TracingMiddleware(
        chat_app(delay=0.05),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    with serving(app) as port:
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}") as client,
            client.stream(
                "POST", "/v1/chat/completions", content=chat_request(stream=True), headers=HEADERS
            ) as response,
        ):
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
        # leaving both blocks closed the connection after the first event
        wait_for(lambda: len(telemetry.spans()) == 1)

    span = telemetry.span()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "client_disconnected"


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[int, list[ExportTraceServiceRequest], list[str]]]:
    """A minimal OTLP/HTTP trace receiver: decodes each protobuf export request."""
    received: list[ExportTraceServiceRequest] = []
    content_types: list[str] = []

    async def traces(request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        received.append(message)
        content_types.append(request.headers.get("content-type", ""))
        return Response(b"", media_type="application/x-protobuf")

    receiver = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    with serving(receiver) as port:
        yield port, received, content_types


def test_spans_are_exported_over_otlp_http(
    telemetry: Telemetry,
    otlp_receiver: tuple[int, list[ExportTraceServiceRequest], list[str]],
) -> None:
    port, received, content_types = otlp_receiver
    provider = TracerProvider(resource=Resource.create({"service.name": "tracing-test"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces"))
    )
    app = TracingMiddleware(
        chat_app(), tracer_provider=provider, meter_provider=telemetry.meter_provider
    )
    try:
        with serving(app) as app_port, httpx.Client() as client:
            response = client.post(
                f"http://127.0.0.1:{app_port}/v1/chat/completions",
                content=chat_request(stream=True),
                headers=HEADERS,
            )
            assert response.status_code == 200
            assert provider.force_flush(10_000)
    finally:
        provider.shutdown()

    assert content_types
    assert content_types[0] == "application/x-protobuf"
    spans = [
        (resource, span)
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert len(spans) == 1
    resource, span = spans[0]
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "tracing-test"
    assert span.name == "POST /v1/chat/completions"
    assert span.kind == span.SPAN_KIND_SERVER
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["gen_ai.usage.output_tokens"].int_value == len(WORDS)
    assert attributes["gen_ai.response.finish_reasons"].array_value.values[0].string_value == "stop"
    assert span.end_time_unix_nano > span.start_time_unix_nano
    raw = b"".join(r.SerializeToString() for r in received)
    for secret in SECRETS:
        assert secret.encode() not in raw
