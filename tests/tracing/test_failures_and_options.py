from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span

from aimiddleware import ConfigurationError
from aimiddleware._asgi import Scope, trace_id
from aimiddleware.tracing import (
    ContentOptions,
    HookOptions,
    TelemetryOptions,
    TracingMiddleware,
    TracingOptions,
)

from .apps import Seen, call, chat_app, chat_request
from .conftest import Telemetry

pytestmark = pytest.mark.anyio


class BrokenExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise ConnectionError("collector unreachable")


class BrokenProcessor(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("processor bug")


def broken_hook(span: Span, scope: Scope) -> None:
    raise ValueError("hook bug")


async def test_failing_hooks_and_processors_never_break_a_request(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(BrokenExporter()))
    provider.add_span_processor(BrokenProcessor())
    try:
        app = TracingMiddleware(
            chat_app(),
            tracer_provider=provider,
            meter_provider=telemetry.meter_provider,
            request_hook=broken_hook,
            response_hook=broken_hook,
            access_log=True,
        )
        result = await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=True))
    finally:
        provider.shutdown()

    assert result.status == 200
    assert result.body.endswith(b"data: [DONE]\n\n")
    ours = [r for r in caplog.records if r.name == "aimiddleware.tracing"]
    assert [r.getMessage() for r in ours] == [
        "tracing: the request hook failed; the request goes on",
        "tracing: the response hook failed; the request goes on",
        "tracing: ending the span failed; the request goes on",
    ]
    # the SDK logs its exporter's failure itself
    assert any("collector unreachable" in str(r.exc_info) for r in caplog.records if r.exc_info)
    # metrics and the access log were still written after the span failed to end
    assert "http.server.request.duration" in telemetry.histograms()
    assert [r for r in caplog.records if r.name == "aimiddleware.access"]


async def test_hooks_see_the_span_and_the_scope(telemetry: Telemetry) -> None:
    seen: list[tuple[str, str]] = []

    def on_request(span: Span, scope: Scope) -> None:
        span.set_attribute("app.tenant", "acme")
        seen.append(("request", scope["path"]))

    def on_response(span: Span, scope: Scope) -> None:
        seen.append(("response", str(trace_id(scope))))

    app = TracingMiddleware(
        chat_app(),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        request_hook=on_request,
        response_hook=on_response,
    )
    await call(app, "GET", "/v1/items/1")
    span = telemetry.span()
    assert (span.attributes or {})["app.tenant"] == "acme"
    assert seen == [("request", "/v1/items/1"), ("response", format(span.context.trace_id, "032x"))]


async def test_without_an_sdk_it_only_propagates_the_callers_trace_id() -> None:
    # no provider given and none installed globally: the API's no-op implementation
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    seen = Seen()
    app = TracingMiddleware(chat_app(seen))
    parent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    result = await call(
        app,
        "POST",
        "/v1/chat/completions",
        body=chat_request(stream=False),
        headers=[(b"traceparent", parent)],
    )
    assert result.status == 200
    assert seen.trace_ids == ["4bf92f3577b34da6a3ce929d0e0e4736"]

    await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=False))
    assert seen.trace_ids[1] is None  # nothing to make one up from


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"body_limit": -1}, "body_limit"),
        ({"body_limit": True}, "body_limit"),
        ({"provider_name": ""}, "provider_name"),
        ({"excluded_urls": ["("]}, "excluded_urls"),
        ({"excluded_urls": [3]}, "excluded_urls"),
        ({"access_log": 3}, "access_log"),
        ({"request_hook": "not callable"}, "request_hook"),
        ({"response_hook": 1}, "response_hook"),
        ({"propagator": object()}, "propagator"),
        ({"capture_content": "yes"}, "capture_content"),
        ({"content_limit": 0}, "content_limit"),
    ],
)
def test_bad_options_are_refused_at_start_up(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TracingMiddleware(chat_app(), **options)  # type: ignore[arg-type]


def test_repr_shows_the_options() -> None:
    app = TracingMiddleware(
        chat_app(), excluded_urls="^/health$", provider_name="llama.cpp", access_log=True
    )
    assert repr(app) == (
        "TracingMiddleware(provider_name='llama.cpp', body_limit=1048576, "
        "excluded_urls=['^/health$'], access_log=AccessLog('aimiddleware.access'), "
        "capture_content=False)"
    )


def test_options_are_keyword_only() -> None:
    # the one positional argument after the app is the options object, nothing else
    with pytest.raises(ConfigurationError, match="TracingOptions"):
        TracingMiddleware(chat_app(), TracerProvider())  # type: ignore[arg-type]


def test_options_by_name_are_sorted_into_their_groups() -> None:
    def hook(span: Span, scope: Scope) -> None:
        pass

    provider = TracerProvider()
    app = TracingMiddleware(
        chat_app(),
        tracer_provider=provider,
        excluded_urls=["^/health$"],
        capture_content=True,
        content_limit=100,
        response_hook=hook,
    )
    config = app.config
    assert config.telemetry == TelemetryOptions(tracer_provider=provider)
    assert config.content == ContentOptions(capture_content=True, content_limit=100)
    assert config.hooks == HookOptions(response_hook=hook)
    assert config.excluded_urls == ("^/health$",)
    assert config == TracingOptions(
        telemetry=TelemetryOptions(tracer_provider=provider),
        excluded_urls="^/health$",
        content=ContentOptions(capture_content=True, content_limit=100),
        hooks=HookOptions(response_hook=hook),
    )


def test_options_can_be_one_object() -> None:
    config = TracingOptions(provider_name="llama.cpp", content=ContentOptions(body_limit=10))
    app = TracingMiddleware(chat_app(), config=config)
    assert app.config is config
    assert "provider_name='llama.cpp', body_limit=10" in repr(app)
    with pytest.raises(ConfigurationError, match="not both"):
        TracingMiddleware(chat_app(), config=config, capture_content=True)
    with pytest.raises(ConfigurationError, match="not both"):
        TracingMiddleware(chat_app(), content=ContentOptions(), body_limit=10)
    with pytest.raises(ConfigurationError, match="content"):
        TracingOptions(content=True)  # type: ignore[arg-type]


async def test_the_access_log_respects_its_loggers_level(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("quiet.access")
    logger.setLevel(logging.WARNING)
    try:
        app = TracingMiddleware(
            chat_app(),
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            access_log=logger,
        )
        await call(app, "GET", "/v1/items/1")
    finally:
        logger.setLevel(logging.NOTSET)
    assert not [r for r in caplog.records if r.name == "quiet.access"]
    assert len(telemetry.spans()) == 1


async def test_a_failing_propagator_costs_the_span_not_the_request(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.propagators.textmap import TextMapPropagator

    class BrokenPropagator(TextMapPropagator):
        def extract(self, carrier, context=None, getter=None):  # type: ignore[no-untyped-def]
            raise ValueError("propagator bug")

        def inject(self, carrier, context=None, setter=None):  # type: ignore[no-untyped-def]
            return None

        @property
        def fields(self) -> set[str]:
            return set()

    app = TracingMiddleware(
        chat_app(),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        propagator=BrokenPropagator(),
    )
    result = await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=False))

    assert result.status == 200
    assert telemetry.spans() == ()
    ours = [r.getMessage() for r in caplog.records if r.name == "aimiddleware.tracing"]
    assert ours == ["tracing: starting the span failed; the request goes on"]
