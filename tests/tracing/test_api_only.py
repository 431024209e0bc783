"""On the OpenTelemetry API alone (no SDK): only the caller's context goes on, nothing is read.

With an SDK's tracer or meter, or an access log or a hook, the request is read as always.
"""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import baggage, trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aimiddleware.context import BODY_KEY, LLM_REQUEST_KEY, trace_id
from aimiddleware.tracing import TracingMiddleware

from .apps import MODEL, call, chat_app, chat_request
from .conftest import Telemetry

pytestmark = pytest.mark.anyio

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def no_sdk(app: object, **options: object) -> TracingMiddleware:
    return TracingMiddleware(
        app,  # type: ignore[arg-type]
        tracer_provider=NoOpTracerProvider(),
        meter_provider=NoOpMeterProvider(),
        **options,  # type: ignore[arg-type]
    )


async def test_without_an_sdk_the_context_goes_on_and_nothing_is_read() -> None:
    seen: dict[str, object] = {}

    async def chat(request: Request) -> Response:
        seen["body"] = await request.body()
        seen["scope_trace_id"] = trace_id(request.scope)
        seen["current_trace_id"] = trace.get_current_span().get_span_context().trace_id
        seen["tenant"] = baggage.get_baggage("tenant")
        return JSONResponse({"id": "chatcmpl-1", "model": MODEL, "choices": []})

    app = no_sdk(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]))
    body = chat_request(stream=False)
    result = await call(
        app,
        "POST",
        "/v1/chat/completions",
        body=body,
        headers=[(b"traceparent", PARENT.encode()), (b"baggage", b"tenant=acme")],
    )

    assert result.status == 200
    assert seen["body"] == body  # the app read the body itself, untouched
    assert seen["scope_trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert seen["current_trace_id"] == 0x0AF7651916CD43DD8448EB211C80319C
    assert seen["tenant"] == "acme"
    # nobody would read what tracing learns: the body was neither read ahead nor parsed
    assert BODY_KEY not in result.scope
    assert LLM_REQUEST_KEY not in result.scope


async def test_without_an_sdk_or_a_caller_context_no_trace_id_is_made_up() -> None:
    result = await call(
        no_sdk(chat_app()), "POST", "/v1/chat/completions", body=chat_request(stream=False)
    )
    assert result.status == 200
    assert trace_id(result.scope) is None


async def test_an_sdk_meter_alone_still_gets_the_genai_metrics(telemetry: Telemetry) -> None:
    app = TracingMiddleware(
        chat_app(), tracer_provider=NoOpTracerProvider(), meter_provider=telemetry.meter_provider
    )
    await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=False))

    metrics = telemetry.histograms()
    (point,) = metrics["gen_ai.server.request.duration"].data.data_points
    assert point.attributes["gen_ai.request.model"] == MODEL
    (tokens,) = metrics["gen_ai.client.inference.operation.output_tokens"].data.data_points
    assert tokens.sum == 2


async def test_an_access_log_still_reads_the_request_without_an_sdk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aimiddleware.access")
    app = no_sdk(chat_app(), access_log=True)
    await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=False))

    (record,) = [r for r in caplog.records if r.name == "aimiddleware.access"]
    line = json.loads(record.getMessage())
    assert (line["model"], line["input_tokens"], line["output_tokens"]) == (MODEL, 9, 2)
    assert line["route"] == "/v1/chat/completions"


async def test_a_request_hook_still_gets_its_span_without_an_sdk() -> None:
    spans: list[object] = []
    app = no_sdk(chat_app(), request_hook=lambda span, scope: spans.append(span))
    await call(app, "GET", "/v1/items/3")
    assert len(spans) == 1
