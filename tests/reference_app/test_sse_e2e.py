"""The reference app's streams behind SSEMiddleware, over a real socket with the real model."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from ..servers import ThreadedServer
from .conftest import LONG_SCHEMA, MODEL

pytestmark = [pytest.mark.model, pytest.mark.e2e]


def engine_of(server: ThreadedServer) -> Any:
    app = server.server.config.app
    while not isinstance(app, FastAPI):
        app = app.app
    return app.state.engine


def long_chat() -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "List numbers."}],
        "response_format": LONG_SCHEMA,
        "max_tokens": 1900,
        "stream": True,
    }


def test_a_real_stream_carries_the_stream_headers(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
    ) as response:
        headers = response.headers
        text = "".join(
            chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices
        )
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache, no-transform"
    assert headers["x-accel-buffering"] == "no"
    assert "content-length" not in headers
    assert text


def test_a_client_disconnect_stops_generation_within_one_token(
    reference_server: ThreadedServer,
) -> None:
    stats = engine_of(reference_server).stats
    cancelled_before = stats.generations_cancelled
    url = f"{reference_server.url}/v1/chat/completions"
    with httpx.Client(timeout=30) as http, http.stream("POST", url, json=long_chat()) as response:
        events = 0
        for line in response.iter_lines():
            events += line.startswith("data: ")
            if events == 4:  # the role chunk and three tokens
                break
    at_close = stats.tokens_generated  # the connection is closed now
    deadline = time.monotonic() + 5
    while stats.generations_active and time.monotonic() < deadline:
        time.sleep(0.005)
    assert stats.generations_active == 0
    assert stats.generations_cancelled == cancelled_before + 1
    assert stats.tokens_generated - at_close <= 1
