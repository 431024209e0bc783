from __future__ import annotations

import json

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from aimiddleware.tracing import TracingMiddleware

from .apps import MODEL, WORDS, Seen, call, chat_app, chat_request
from .conftest import Telemetry

pytestmark = pytest.mark.anyio


def traced(telemetry: Telemetry, app: object, **options: object) -> TracingMiddleware:
    return TracingMiddleware(
        app,  # type: ignore[arg-type]
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        **options,  # type: ignore[arg-type]
    )


async def test_a_stream_is_one_server_span_that_ends_after_its_last_chunk(
    telemetry: Telemetry,
) -> None:
    app = traced(telemetry, chat_app(delay=0.01))
    result = await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=True))

    bodies = [s for s in result.sent if s.message["type"] == "http.response.body"]
    assert len(bodies) > len(WORDS)  # streamed chunk by chunk, not gathered
    span = telemetry.span()  # one span, not one per chunk
    assert span.kind is SpanKind.SERVER
    assert span.name == "POST /v1/chat/completions"
    assert span.end_time is not None
    assert span.start_time is not None
    assert span.end_time >= bodies[-1].at_ns  # the last byte was sent before the span ended
    assert span.start_time <= result.sent[0].at_ns
    assert span.status.status_code is StatusCode.UNSET

    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.route"] == "/v1/chat/completions"
    assert attributes["http.response.status_code"] == 200
    assert attributes["url.scheme"] == "https"
    assert attributes["server.address"] == "api.example.test"
    assert attributes["server.port"] == 8443
    assert attributes["client.address"] == "10.1.2.3"
    assert attributes["user_agent.original"] == "agent-sdk/1.0"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.request.max_tokens"] == 32
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.request.top_p"] == 0.9
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.id"] == "chatcmpl-42"
    assert attributes["gen_ai.response.model"] == MODEL
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] == 12
    assert attributes["gen_ai.usage.output_tokens"] == len(WORDS)
    ttft = attributes["gen_ai.response.time_to_first_chunk"]
    assert isinstance(ttft, float)
    # the first chunk waited one delay; the whole stream waited one per event
    assert 0.01 <= ttft < (span.end_time - span.start_time) / 1e9
    assert attributes["aimiddleware.request_id"].startswith("req_")
    # message content is not recorded unless asked for
    assert "gen_ai.input.messages" not in attributes
    assert "gen_ai.output.messages" not in attributes


async def test_a_json_completion_gets_the_response_attributes(telemetry: Telemetry) -> None:
    seen = Seen()
    app = traced(telemetry, chat_app(seen))
    result = await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=False))

    assert result.status == 200
    assert seen.bodies == [chat_request(stream=False)]  # the app got the body, untouched
    attributes = dict(telemetry.span().attributes or {})
    # the conventions set gen_ai.request.stream if and only if the request streams; unset
    # means a request that does not
    assert "gen_ai.request.stream" not in attributes
    assert attributes["gen_ai.response.id"] == "chatcmpl-7"
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert attributes["gen_ai.usage.input_tokens"] == 9
    assert attributes["gen_ai.usage.output_tokens"] == 2
    assert "gen_ai.response.time_to_first_chunk" not in attributes


async def test_a_client_that_leaves_mid_stream_ends_the_span_with_an_error(
    telemetry: Telemetry,
) -> None:
    app = traced(telemetry, chat_app(delay=0.01))
    result = await call(
        app, "POST", "/v1/chat/completions", body=chat_request(stream=True), disconnect_after=3
    )

    assert not any(
        s.message["type"] == "http.response.body" and not s.message.get("more_body")
        for s in result.sent
    )
    span = telemetry.span()
    assert span.status.status_code is StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "client_disconnected"
    assert "gen_ai.usage.output_tokens" not in attributes  # the usage chunk never went out
    assert attributes["gen_ai.response.id"] == "chatcmpl-42"


async def test_an_incoming_traceparent_is_the_parent_and_the_app_sees_the_trace_id(
    telemetry: Telemetry,
) -> None:
    seen = Seen()
    app = traced(telemetry, chat_app(seen))
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await call(
        app,
        "POST",
        "/v1/chat/completions",
        body=chat_request(stream=False),
        headers=[(b"traceparent", parent.encode()), (b"tracestate", b"vendor=opaque")],
    )

    span = telemetry.span()
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None
    assert span.parent.is_remote
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert span.context.trace_state.get("vendor") == "opaque"
    assert seen.trace_ids == ["0af7651916cd43dd8448eb211c80319c"]


async def test_incoming_baggage_is_in_the_apps_context(telemetry: Telemetry) -> None:
    from opentelemetry import baggage
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def echo(request: Request) -> Response:
        return JSONResponse({"tenant": baggage.get_baggage("tenant")})

    app = traced(telemetry, Starlette(routes=[Route("/echo", echo)]))
    result = await call(app, "GET", "/echo", headers=[(b"baggage", b"tenant=acme")])
    assert json.loads(result.body) == {"tenant": "acme"}


async def test_without_a_traceparent_the_app_sees_the_new_trace_id(telemetry: Telemetry) -> None:
    seen = Seen()
    app = traced(telemetry, chat_app(seen))
    await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=False))

    span = telemetry.span()
    assert span.parent is None
    assert seen.trace_ids == [format(span.context.trace_id, "032x")]


async def test_route_templates_name_the_span_and_other_routes_have_no_genai(
    telemetry: Telemetry,
) -> None:
    app = traced(telemetry, chat_app())
    result = await call(app, "GET", "/v1/items/17")

    assert json.loads(result.body) == {"id": 17}
    span = telemetry.span()
    assert span.name == "GET /v1/items/{item_id}"
    attributes = dict(span.attributes or {})
    assert attributes["http.route"] == "/v1/items/{item_id}"
    assert attributes["url.path"] == "/v1/items/17"
    assert not any(key.startswith("gen_ai.") for key in attributes)
    assert "aimiddleware.body" not in result.scope  # a non-LLM body is never read


async def test_an_unmatched_path_keeps_a_low_cardinality_name(telemetry: Telemetry) -> None:
    app = traced(telemetry, chat_app())
    result = await call(app, "GET", "/no/such/thing/123")

    assert result.status == 404
    span = telemetry.span()
    assert span.name == "GET"
    assert "http.route" not in (span.attributes or {})
    assert span.status.status_code is StatusCode.UNSET  # 4xx is the client's error


@pytest.mark.parametrize(("status", "error"), [(404, False), (429, False), (503, True)])
async def test_server_errors_mark_the_span(telemetry: Telemetry, status: int, error: bool) -> None:
    app = traced(telemetry, chat_app())
    await call(app, "GET", "/status", query=f"status={status}".encode())

    span = telemetry.span()
    attributes = dict(span.attributes or {})
    assert attributes["http.response.status_code"] == status
    if error:
        assert span.status.status_code is StatusCode.ERROR
        assert attributes["error.type"] == str(status)
    else:
        assert span.status.status_code is StatusCode.UNSET
        assert "error.type" not in attributes


async def test_an_exception_in_the_app_is_recorded(telemetry: Telemetry) -> None:
    app = traced(telemetry, chat_app(fail=True))
    with pytest.raises(RuntimeError, match="the model crashed"):
        await call(app, "POST", "/v1/chat/completions", body=chat_request(stream=False))

    span = telemetry.span()
    assert span.status.status_code is StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "RuntimeError"
    assert attributes["http.response.status_code"] == 500  # Starlette answered before re-raising
    assert [e.name for e in span.events] == ["exception"]


async def test_an_error_event_inside_a_stream_marks_the_span(telemetry: Telemetry) -> None:
    from starlette.responses import StreamingResponse

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        async def events():  # type: ignore[no-untyped-def]
            yield b'data: {"id": "c", "choices": [{"delta": {"content": "Hi"}}]}\n\n'
            yield b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n'

        await StreamingResponse(events(), media_type="text/event-stream")(scope, receive, send)  # type: ignore[arg-type]

    await call(
        traced(telemetry, app), "POST", "/v1/chat/completions", body=chat_request(stream=True)
    )

    span = telemetry.span()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "stream_error"


async def test_a_body_larger_than_the_limit_is_not_read(telemetry: Telemetry) -> None:
    seen = Seen()
    app = traced(telemetry, chat_app(seen), body_limit=64)
    body = chat_request(stream=False)
    await call(app, "POST", "/v1/chat/completions", body=body)

    assert seen.bodies == [body]
    attributes = dict(telemetry.span().attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert "gen_ai.request.model" not in attributes
    # the response is read the same way: also over the limit
    assert "gen_ai.response.id" not in attributes


async def test_excluded_urls_are_not_traced(telemetry: Telemetry) -> None:
    app = traced(telemetry, chat_app(), excluded_urls=["^/health$"])
    result = await call(app, "GET", "/health")
    assert result.status == 200
    assert telemetry.spans() == ()
    await call(app, "GET", "/v1/items/1")
    assert len(telemetry.spans()) == 1


async def test_excluded_urls_come_from_the_environment_by_default(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "^/health$, ^/metrics")
    app = traced(telemetry, chat_app())
    await call(app, "GET", "/health")
    assert telemetry.spans() == ()
    assert "'^/health$', '^/metrics'" in repr(app)


async def test_other_scopes_pass_straight_through(telemetry: Telemetry) -> None:
    seen: list[str] = []

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        seen.append(scope["type"])

    async def nothing() -> dict:  # type: ignore[type-arg]
        return {}

    async def ignore(message: object) -> None:
        return None

    await traced(telemetry, app)({"type": "lifespan"}, nothing, ignore)
    assert seen == ["lifespan"]
    assert telemetry.spans() == ()


async def test_memoryview_chunks_are_read_like_bytes(telemetry: Telemetry) -> None:
    from starlette.responses import StreamingResponse

    from .apps import stream_events

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        async def events():  # type: ignore[no-untyped-def]
            for event in stream_events():
                yield memoryview(event)

        response = StreamingResponse(events(), media_type="text/event-stream")
        await response(scope, receive, send)  # type: ignore[arg-type]

    app_ = traced(telemetry, app)
    await call(app_, "POST", "/v1/chat/completions", body=chat_request(stream=True))

    attributes = dict(telemetry.span().attributes or {})
    assert attributes["gen_ai.usage.output_tokens"] == len(WORDS)
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)


async def test_a_cancelled_request_ends_its_span_with_an_error(telemetry: Telemetry) -> None:
    import asyncio

    started = asyncio.Event()

    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        await send(  # type: ignore[operator]
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": b": hi\n\n", "more_body": True})  # type: ignore[operator]
        started.set()
        await asyncio.Event().wait()  # a generation that never ends

    task = asyncio.ensure_future(call(traced(telemetry, app), "GET", "/events"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    span = telemetry.span()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "asyncio.exceptions.CancelledError"
