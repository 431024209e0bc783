from __future__ import annotations

import json

import pytest

from aimiddleware.tracing import TracingMiddleware

from .apps import WORDS, call, chat_app, chat_request
from .conftest import Telemetry

pytestmark = pytest.mark.anyio


def capturing(telemetry: Telemetry, **options: object) -> TracingMiddleware:
    return TracingMiddleware(
        chat_app(),
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        capture_content=True,
        **options,  # type: ignore[arg-type]
    )


async def test_opted_in_content_of_a_stream_is_recorded_as_genai_messages(
    telemetry: Telemetry,
) -> None:
    await call(capturing(telemetry), "POST", "/v1/chat/completions", body=chat_request(stream=True))

    attributes = dict(telemetry.span().attributes or {})
    assert json.loads(attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Say hello."}]}
    ]
    assert json.loads(attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "".join(WORDS)}],
            "finish_reason": "stop",
        }
    ]
    assert attributes["gen_ai.usage.output_tokens"] == len(WORDS)


async def test_opted_in_content_of_a_json_completion_is_recorded(telemetry: Telemetry) -> None:
    await call(
        capturing(telemetry), "POST", "/v1/chat/completions", body=chat_request(stream=False)
    )

    attributes = dict(telemetry.span().attributes or {})
    assert json.loads(attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hello!"}],
            "finish_reason": "length",
        }
    ]


async def test_captured_text_is_cut_at_the_limit_and_stays_valid_json(telemetry: Telemetry) -> None:
    await call(
        capturing(telemetry, content_limit=5),
        "POST",
        "/v1/chat/completions",
        body=chat_request(stream=True),
    )

    attributes = dict(telemetry.span().attributes or {})
    prompt = json.loads(attributes["gen_ai.input.messages"])
    assert prompt[0]["parts"][0]["content"] == "Say h"
    output = json.loads(attributes["gen_ai.output.messages"])
    assert output[0]["parts"][0]["content"] == "".join(WORDS)[:5]
