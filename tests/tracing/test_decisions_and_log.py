from __future__ import annotations

import json
import logging

import pytest

from aimiddleware import Principal, set_principal
from aimiddleware._asgi import ASGIApp, Receive, Scope, Send, annotate, request_id
from aimiddleware.tracing import ACCESS_LOGGER, TracingMiddleware

from .apps import MODEL, WORDS, call, chat_app, chat_request
from .conftest import Telemetry

pytestmark = pytest.mark.anyio


class FakeAuthAndLimits:
    """Stands in for the inner middlewares: records a principal and decisions like they do."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        set_principal(
            scope,
            Principal(
                id="key_123",
                client_id="agent-7",
                scopes=frozenset({"chat", "models:read"}),
                tier="agent",
                credential="api_key",
                claims={"raw": "must not be copied"},
            ),
        )
        annotate(scope, "aimiddleware.idempotency.outcome", "claimed")
        annotate(scope, "aimiddleware.ratelimit.tier", "agent")
        annotate(scope, "aimiddleware.ratelimit.remaining_requests", 59)
        await self.app(scope, receive, send)
        # decided once the stream is over (token reconciliation): still recorded
        annotate(scope, "aimiddleware.ratelimit.tokens_reconciled", True)


def stack(telemetry: Telemetry, **options: object) -> TracingMiddleware:
    return TracingMiddleware(
        FakeAuthAndLimits(chat_app()),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        **options,  # type: ignore[arg-type]
    )


async def test_decisions_of_the_inner_middlewares_are_on_the_span(telemetry: Telemetry) -> None:
    await call(stack(telemetry), "POST", "/v1/chat/completions", body=chat_request(stream=True))

    attributes = dict(telemetry.span().attributes or {})
    assert attributes["aimiddleware.idempotency.outcome"] == "claimed"
    assert attributes["aimiddleware.ratelimit.tier"] == "agent"
    assert attributes["aimiddleware.ratelimit.remaining_requests"] == 59
    assert attributes["aimiddleware.ratelimit.tokens_reconciled"] is True
    assert attributes["aimiddleware.auth.principal"] == "key_123"
    assert attributes["aimiddleware.auth.client_id"] == "agent-7"
    assert attributes["aimiddleware.auth.tier"] == "agent"
    assert attributes["aimiddleware.auth.scopes"] == "chat models:read"
    assert not any("must not be copied" in str(v) for v in attributes.values())


async def test_the_access_log_is_one_json_line_per_request(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    app = stack(telemetry, access_log=True)
    result = await call(
        app,
        "POST",
        "/v1/chat/completions",
        body=chat_request(stream=True),
        headers=[(b"x-request-id", b"client-req-1")],
    )

    lines = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(lines) == 1
    assert lines[0].levelno == logging.INFO
    record = json.loads(lines[0].getMessage())
    span = telemetry.span()
    assert record["request_id"] == "client-req-1" == request_id(result.scope)
    assert record["trace_id"] == format(span.context.trace_id, "032x")
    assert record["span_id"] == format(span.context.span_id, "016x")
    assert record["principal_id"] == "key_123"
    assert record["method"] == "POST"
    assert record["route"] == "/v1/chat/completions"
    assert record["status"] == 200
    assert record["error_type"] is None
    assert record["model"] == MODEL
    assert record["stream"] is True
    assert record["input_tokens"] == 12
    assert record["output_tokens"] == len(WORDS)
    assert 0 < record["ttft_ms"] <= record["duration_ms"]
    assert record["decisions"] == {
        "idempotency.outcome": "claimed",
        "ratelimit.tier": "agent",
        "ratelimit.remaining_requests": 59,
        "ratelimit.tokens_reconciled": True,
    }


async def test_the_access_log_goes_to_the_named_logger(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    app = TracingMiddleware(
        chat_app(),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        access_log="myapp.access",
    )
    await call(app, "GET", "/v1/items/3")
    (line,) = [r for r in caplog.records if r.name == "myapp.access"]
    record = json.loads(line.getMessage())
    assert record["route"] == "/v1/items/{item_id}"
    assert record["principal_id"] is None
    assert "model" not in record  # not an LLM route


async def test_no_access_log_unless_asked(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    await call(stack(telemetry), "GET", "/v1/items/3")
    assert not [r for r in caplog.records if r.name == ACCESS_LOGGER]
