"""Tracing of the reference app: the real model, the openai SDK, uvicorn on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reference_app import Settings, create_app
from reference_app.telemetry import Telemetry

from ..live import wait_for
from ..servers import ThreadedServer, bound_socket, port_of
from .conftest import LONG_SCHEMA, MODEL, Traced, cli_token, wait_ready

pytestmark = [pytest.mark.model, pytest.mark.e2e]

API_KEY = "sk-test-3f9a1c0d5e7b2a4c6e8f0a1b"  # one of the secrets the scan looks for


def test_a_streamed_chat_is_one_span_with_the_real_usage(
    traced: tuple[Traced, ThreadedServer],
) -> None:
    spans, server = traced
    parent_trace = "5b8efff798038103d269b633813fc60c"
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Name three colours."}],
            max_tokens=16,
            temperature=0.2,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"traceparent": f"00-{parent_trace}-eee19b7ec3c1b174-01"},
        )
        ids, finish, usage = set(), None, None
        for chunk in stream:
            ids.add(chunk.id)
            if chunk.choices:
                finish = chunk.choices[0].finish_reason or finish
            elif chunk.usage is not None:
                usage = chunk.usage
        received_all = time.time_ns()
    assert usage is not None
    wait_for(lambda: len(spans.server_spans()) == 1)

    (span,) = spans.server_spans()  # /health polls are excluded; one span for the stream
    assert span.end_time is not None
    assert span.end_time <= received_all  # ended at the last byte, not at some later teardown
    assert format(span.context.trace_id, "032x") == parent_trace
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    assert span.name == "POST /v1/chat/completions"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.request.max_tokens"] == 16
    assert attributes["gen_ai.request.temperature"] == 0.2
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.model"] == MODEL
    assert {attributes["gen_ai.response.id"]} == ids
    assert attributes["gen_ai.response.finish_reasons"] == (finish,)
    assert attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens > 0
    assert attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens > 0
    ttft = attributes["gen_ai.response.time_to_first_chunk"]
    assert 0 < ttft < (span.end_time - (span.start_time or 0)) / 1e9

    data = spans.metrics.get_metrics_data()
    assert data is not None
    names = {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert {
        "http.server.request.duration",
        "gen_ai.server.request.duration",
        "gen_ai.server.time_to_first_token",
        "gen_ai.client.inference.operation.input_tokens",
        "gen_ai.client.inference.operation.output_tokens",
    } <= names
    assert "gen_ai.client.token.usage" not in names  # the previous release's, on request only


def token_sums(spans: Traced) -> dict[str, tuple[int, int]]:
    """Token histogram name -> (data points' count, sum), over every point."""
    data = spans.metrics.get_metrics_data()
    found: dict[str, tuple[int, int]] = {}
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name.startswith("gen_ai.client.inference.operation."):
                    points = list(metric.data.data_points)
                    found[metric.name] = (
                        sum(p.count for p in points),
                        int(sum(p.sum for p in points)),
                    )
    return found


INPUT = "gen_ai.client.inference.operation.input_tokens"
OUTPUT = "gen_ai.client.inference.operation.output_tokens"
STREAMS = [
    pytest.param(False, False, id="plain"),
    pytest.param(True, False, id="streamed"),
    pytest.param(True, True, id="streamed-include_usage"),
]


def generate(
    client: openai.OpenAI, operation: str, stream: bool, include_usage: bool, **extra: Any
) -> Any:
    """One request of ``operation``; returns the usage the client was told, if any."""
    options: dict[str, Any] = {"max_tokens": 8, **extra}
    if stream:
        options["stream"] = True
        if include_usage:
            options["stream_options"] = {"include_usage": True}
    if operation == "chat":
        messages: Any = [{"role": "user", "content": "Name a colour."}]
        result: Any = client.chat.completions.create(model=MODEL, messages=messages, **options)
    else:
        result = client.completions.create(model=MODEL, prompt="Colours: red,", **options)
    if not stream:
        return result.usage
    usage = None
    for chunk in result:
        usage = chunk.usage or usage
    return usage


@pytest.mark.parametrize(("stream", "include_usage"), STREAMS)
@pytest.mark.parametrize("operation", ["chat", "text_completion"])
def test_every_generation_span_carries_the_usage_the_model_stated(
    traced: tuple[Traced, ThreadedServer], operation: str, stream: bool, include_usage: bool
) -> None:
    spans, server = traced
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0) as client:
        told = generate(client, operation, stream, include_usage)
    wait_for(lambda: len(spans.server_spans()) == 1)

    (span,) = spans.server_spans()
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == operation
    # set if and only if the request streams (the GenAI conventions): unset means it did not
    assert attributes.get("gen_ai.request.stream", False) is stream
    assert ("gen_ai.request.stream" in attributes) is stream
    input_tokens = attributes["gen_ai.usage.input_tokens"]
    output_tokens = attributes["gen_ai.usage.output_tokens"]
    assert input_tokens > 0
    assert 0 < output_tokens <= 8
    if stream and not include_usage:
        assert told is None  # the client got the stream it asked for, without usage
    else:
        assert (told.prompt_tokens, told.completion_tokens) == (input_tokens, output_tokens)
    assert token_sums(spans) == {INPUT: (1, input_tokens), OUTPUT: (1, output_tokens)}
    assert "aimiddleware.tracing.usage_replayed" not in attributes


def test_an_embeddings_span_carries_its_input_tokens(
    traced: tuple[Traced, ThreadedServer],
) -> None:
    spans, server = traced
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0) as client:
        result = client.embeddings.create(model=MODEL, input=["red", "a shade of blue"])
    wait_for(lambda: len(spans.server_spans()) == 1)

    (span,) = spans.server_spans()
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens > 0
    assert token_sums(spans)[INPUT] == (1, result.usage.prompt_tokens)


@pytest.mark.parametrize(("stream", "include_usage"), STREAMS)
def test_an_idempotent_replay_records_no_new_tokens_and_its_span_says_so(
    traced: tuple[Traced, ThreadedServer], stream: bool, include_usage: bool
) -> None:
    spans, server = traced
    key = {"Idempotency-Key": f"replay-{stream}-{include_usage}"}
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0) as client:
        generate(client, "chat", stream, include_usage, temperature=0, extra_headers=key)
        wait_for(lambda: len(spans.server_spans()) == 1)
        generate(client, "chat", stream, include_usage, temperature=0, extra_headers=key)
    wait_for(lambda: len(spans.server_spans()) == 2)

    original, replay = sorted(spans.server_spans(), key=lambda s: s.start_time or 0)
    first, again = dict(original.attributes or {}), dict(replay.attributes or {})
    assert first["aimiddleware.idempotency.outcome"] == "claimed"
    assert again["aimiddleware.idempotency.outcome"] == "replayed"
    assert again["aimiddleware.tracing.usage_replayed"] is True
    assert "gen_ai.usage.input_tokens" not in again
    assert "gen_ai.usage.output_tokens" not in again
    output_tokens = first["gen_ai.usage.output_tokens"]
    assert output_tokens > 0
    # the tokens were counted once, for the request that produced them
    assert token_sums(spans)[OUTPUT] == (1, output_tokens)


def test_a_streamed_tool_call_is_recorded_with_its_finish_reason(
    traced: tuple[Traced, ThreadedServer],
) -> None:
    spans, server = traced
    tool = {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    }
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What time is it?"}],
            tools=[tool],  # type: ignore[list-item]
            tool_choice="required",
            max_tokens=40,
            stream=True,
        )
        finishes = [c.choices[0].finish_reason for c in stream if c.choices]
    assert finishes[-1] == "tool_calls"
    wait_for(lambda: len(spans.server_spans()) == 1)
    (span,) = spans.server_spans()
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)


def test_a_client_that_leaves_a_long_generation_ends_its_span_with_an_error(
    traced: tuple[Traced, ThreadedServer],
) -> None:
    spans, server = traced
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Count."}],
            max_tokens=1500,
            stream=True,
            response_format=LONG_SCHEMA,  # type: ignore[arg-type]
        )
        for seen, _ in enumerate(stream):
            if seen == 3:
                break
        stream.close()
    wait_for(lambda: len(spans.server_spans()) == 1)

    (span,) = spans.server_spans()
    assert span.status.status_code is StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "client_disconnected"
    assert "gen_ai.usage.output_tokens" not in attributes


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, dict[str, list[bytes]]]]:
    received: dict[str, list[bytes]] = {"traces": [], "metrics": []}

    async def collect(request: Request) -> Response:
        received[request.path_params["signal"]].append(await request.body())
        return Response(b"", media_type="application/x-protobuf")

    receiver = Starlette(routes=[Route("/v1/{signal}", collect, methods=["POST"])])
    with ThreadedServer(receiver) as server:
        yield server.url, received


def test_the_reference_app_exports_over_otlp_when_an_endpoint_is_set(
    otlp_receiver: tuple[str, dict[str, list[bytes]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, received = otlp_receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "reference-under-test")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    with ThreadedServer(create_app(Settings(auth=False))) as server:
        wait_ready(server.url)
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0) as c:
            reply = c.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
    # leaving the block stopped the server: its lifespan's end flushed both exporters

    spans = []
    for raw in received["traces"]:
        request = ExportTraceServiceRequest()
        request.ParseFromString(raw)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                spans += [(service, span) for span in scope.spans]
    chats = [(svc, s) for svc, s in spans if s.name == "POST /v1/chat/completions"]
    assert len(chats) == 1
    service, span = chats[0]
    assert service["service.name"] == "reference-under-test"
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["gen_ai.response.id"].string_value == reply.id
    assert reply.usage is not None
    assert attributes["gen_ai.usage.output_tokens"].int_value == reply.usage.completion_tokens
    assert API_KEY.encode() not in b"".join(received["traces"])

    names = set()
    for raw in received["metrics"]:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(raw)
        names |= {
            m.name for r in request.resource_metrics for s in r.scope_metrics for m in s.metrics
        }
    assert {"http.server.request.duration", "gen_ai.server.request.duration"} <= names


def test_the_oauth_decisions_are_on_the_span_and_the_token_is_not(tmp_path: Path) -> None:
    spans = Traced()
    sock = bound_socket()
    port = port_of(sock)
    key_file = tmp_path / "issuer-key.json"
    settings = Settings(port=port, auth=True, auth_key_file=key_file)
    app = create_app(settings, telemetry=Telemetry(spans.tracer_provider, spans.meter_provider))
    try:
        with ThreadedServer(app, sock=sock) as server:
            wait_ready(server.url)
            token = cli_token(port, key_file)
            with openai.OpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0) as client:
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
                )
                with pytest.raises(openai.AuthenticationError):
                    client.chat.completions.create(
                        model=MODEL,
                        messages=[{"role": "user", "content": "Hi"}],
                        max_tokens=4,
                        extra_headers={"Authorization": "Bearer not-a-token"},
                    )
            wait_for(lambda: len(spans.server_spans()) == 2)
    finally:
        spans.tracer_provider.shutdown()
        spans.meter_provider.shutdown()

    allowed, refused = sorted(
        (dict(s.attributes or {}) for s in spans.server_spans()),
        key=lambda a: a["http.response.status_code"],
    )
    assert allowed["http.response.status_code"] == 200
    assert allowed["aimiddleware.auth.outcome"] == "authenticated"
    assert allowed["aimiddleware.auth.principal"]
    assert "chat" in str(allowed["aimiddleware.auth.scopes"])
    assert allowed["gen_ai.usage.output_tokens"] > 0
    assert refused["http.response.status_code"] == 401
    assert refused["aimiddleware.auth.outcome"] == "refused"
    for attributes in (allowed, refused):
        for value in attributes.values():
            assert token not in str(value)
            assert "not-a-token" not in str(value)
