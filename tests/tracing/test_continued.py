"""The work an idempotent stream goes on with after its client left has a span of its own.

The request's SERVER span ends when the client leaves; the generation the idempotency
middleware keeps running (to record the answer) is an INTERNAL child span in the same trace,
ending with it and carrying what was decided meanwhile: ``recorded`` and ``tokens_charged``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from aimiddleware._asgi import ASGIApp
from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.ratelimit import RateLimitMiddleware, Tier
from aimiddleware.sse import SSEMiddleware
from aimiddleware.tracing import TracingMiddleware

from ..asgi import sse
from .apps import PROMPT_TOKENS, WORDS, call, chat_app, chat_request, chunk
from .conftest import Telemetry

pytestmark = pytest.mark.anyio

PATH = "/v1/chat/completions"
KEY = [(b"idempotency-key", b"step-42")]
# the SSE middleware cancels the request when its client leaves; without it, nothing does and
# the request's own call returns only once the generation ended
CANCELLERS = [pytest.param(True, id="cancelled-by-sse"), pytest.param(False, id="not-cancelled")]


def stack(app: ASGIApp, telemetry: Telemetry, *, cancelled: bool) -> TracingMiddleware:
    inner: ASGIApp = IdempotencyMiddleware(
        RateLimitMiddleware(app, tiers=[Tier("t", tokens="100000/minute")]),
        store="memory://",
        anonymous="shared",
    )
    if cancelled:
        inner = SSEMiddleware(inner, heartbeat=None)
    return TracingMiddleware(
        inner, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )


async def finished(telemetry: Telemetry, count: int) -> tuple[ReadableSpan, ...]:
    for _ in range(500):  # the generation goes on after the call returned: up to 5 s
        spans = telemetry.spans()
        if len(spans) >= count:
            return spans
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(telemetry.spans())} spans finished, expected {count}")


def the(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> ReadableSpan:
    [span] = [s for s in spans if s.kind is kind]
    return span


@pytest.mark.parametrize("cancelled", CANCELLERS)
async def test_the_generation_after_a_disconnect_is_a_child_span_with_its_outcome(
    telemetry: Telemetry, cancelled: bool
) -> None:
    app = stack(chat_app(delay=0.02), telemetry, cancelled=cancelled)
    body = chat_request(stream=True)
    cut = await call(app, "POST", PATH, body=body, headers=KEY, disconnect_after=3)
    assert not any(
        s.message["type"] == "http.response.body" and not s.message.get("more_body")
        for s in cut.sent
    )
    spans = await finished(telemetry, 2)
    server, work = the(spans, SpanKind.SERVER), the(spans, SpanKind.INTERNAL)

    # the request's span is the HTTP exchange: it ends when the client left
    assert server.status.status_code is StatusCode.ERROR
    assert (server.attributes or {})["error.type"] == "client_disconnected"
    assert (server.attributes or {})["aimiddleware.idempotency.client_gone"] is True

    # the work that went on: same trace, under the request's span, from when the client left
    assert work.name == "idempotency.complete"
    assert work.parent is not None
    assert server.context is not None
    assert work.context is not None
    assert work.parent.span_id == server.context.span_id
    assert work.context.trace_id == server.context.trace_id
    assert work.start_time == server.end_time
    assert work.end_time is not None
    assert work.start_time is not None
    assert work.end_time >= work.start_time
    attributes = dict(work.attributes or {})
    assert attributes["aimiddleware.idempotency.recorded"] == "stored"
    assert attributes["aimiddleware.ratelimit.tokens_charged"] == PROMPT_TOKENS + len(WORDS)
    assert attributes["gen_ai.usage.output_tokens"] == len(WORDS)
    assert (
        attributes["aimiddleware.request_id"]
        == (server.attributes or {})["aimiddleware.request_id"]
    )
    assert work.status.status_code is StatusCode.UNSET

    # the promise stands: the retry gets the whole answer, without a second generation
    retry = await call(app, "POST", PATH, body=body, headers=KEY)
    assert retry.status == 200
    assert b"[DONE]" in retry.body


async def test_a_generation_that_fails_after_the_disconnect_marks_its_span(
    telemetry: Telemetry,
) -> None:
    async def endpoint(request: Request) -> Response:
        await request.body()

        async def events() -> AsyncIterator[bytes]:
            for i, word in enumerate(WORDS):
                await asyncio.sleep(0.02)
                if i == 4:
                    raise RuntimeError("the model crashed")
                yield sse(chunk(word))

        return StreamingResponse(events(), media_type="text/event-stream")

    app = stack(
        Starlette(routes=[Route(PATH, endpoint, methods=["POST"])]), telemetry, cancelled=True
    )
    await call(app, "POST", PATH, body=chat_request(stream=True), headers=KEY, disconnect_after=2)
    spans = await finished(telemetry, 2)
    work = the(spans, SpanKind.INTERNAL)
    attributes: dict[str, Any] = dict(work.attributes or {})
    assert work.status.status_code is StatusCode.ERROR
    assert attributes["error.type"] == "RuntimeError"
    assert attributes["aimiddleware.idempotency.recorded"] == "app_error"
    assert [event.name for event in work.events] == ["exception"]
