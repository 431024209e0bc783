"""Every name the middleware emits is one of the conventions' names listed in ``_semconv``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aimiddleware.tracing import TracingMiddleware
from aimiddleware.tracing import _semconv as sc

from .apps import call, chat_app, chat_request, openai_like_app
from .conftest import Telemetry

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).parents[2] / "docs" / "tracing.md"
OWN = "aimiddleware."  # the names the middleware defines itself


async def emitted(telemetry: Telemetry) -> set[str]:
    """The span attribute, metric and metric attribute names of a varied set of requests."""
    for app in (chat_app(), openai_like_app()):
        traced = TracingMiddleware(
            app,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            capture_content=True,
        )
        for stream in (False, True):
            body = chat_request(stream=stream, stream_options={"include_usage": True})
            await call(traced, "POST", "/v1/chat/completions", body=body)
        await call(traced, "BREW", "/v1/items/5")
        await call(traced, "GET", "/status", query=b"status=503")
    embeddings = json.dumps({"model": "m", "input": "words"}).encode()
    await call(
        TracingMiddleware(
            openai_like_app(),
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
        ),
        "POST",
        "/v1/embeddings",
        body=embeddings,
    )
    names: set[str] = set()
    for span in telemetry.spans():
        names |= set(span.attributes or {})
    for name, metric in telemetry.histograms().items():
        names.add(name)
        for point in metric.data.data_points:
            names |= set(point.attributes)
    return names


async def test_every_emitted_name_is_a_current_convention_name(telemetry: Telemetry) -> None:
    names = await emitted(telemetry)

    conventions = {name for name in names if not name.startswith(OWN)}
    assert conventions <= sc.CURRENT, sorted(conventions - sc.CURRENT)
    # the run reached what matters: usage, streaming, content, both token histograms
    assert {
        sc.GEN_AI_USAGE_INPUT_TOKENS,
        sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
        sc.GEN_AI_INPUT_MESSAGES,
        sc.GEN_AI_INPUT_TOKENS[0],
        sc.GEN_AI_OUTPUT_TOKENS[0],
        sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN[0],
        sc.HTTP_REQUEST_METHOD_ORIGINAL,
        sc.ERROR_TYPE,
    } <= conventions
    assert not conventions & (sc.PREVIOUS - sc.CURRENT)


async def test_with_gen_ai_dup_every_name_is_a_current_or_previous_one(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(sc.OPT_IN_ENV, sc.GEN_AI_DUP)
    names = await emitted(telemetry)

    conventions = {name for name in names if not name.startswith(OWN)}
    assert conventions <= sc.CURRENT | sc.PREVIOUS
    assert conventions >= (sc.PREVIOUS - sc.CURRENT)  # the removed names came back


def test_the_lists_agree_with_the_metric_specs() -> None:
    specs = [
        sc.HTTP_SERVER_REQUEST_DURATION,
        sc.GEN_AI_SERVER_REQUEST_DURATION,
        sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
        sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
        sc.GEN_AI_INPUT_TOKENS,
        sc.GEN_AI_OUTPUT_TOKENS,
    ]
    assert {spec[0] for spec in specs} <= sc.CURRENT
    assert sc.GEN_AI_TOKEN_USAGE[0] in sc.PREVIOUS - sc.CURRENT
    assert set(sc.SINCE) == sc.CURRENT | sc.PREVIOUS


def test_the_docs_table_lists_every_name_with_its_release_and_setting() -> None:
    text = DOCS.read_text()
    assert f"GenAI semantic conventions v{sc.GENAI_RELEASE}" in text
    rows = {
        match[1]: (match[2], match[3])
        for match in re.finditer(r"^\| `([a-z_.]+)` \| ([^|]+?) \| ([^|]+?) \|$", text, re.M)
    }
    for name, since in sc.SINCE.items():
        assert name in rows, name
        documented_since, setting = rows[name]
        assert documented_since == since, name
        removed = name not in sc.CURRENT
        added = name not in sc.PREVIOUS
        expected = (
            "`gen_ai/dup` only" if removed else "default" if added else "default, `gen_ai/dup`"
        )
        assert setting == expected, name
