"""A non-streamed generation whose client leaves is stopped, with the real model: the instance is
free within a token, the rate limiter settles to what was generated, a request that was still
waiting leaves the line, and under an Idempotency-Key the answer is still completed and stored."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from ..live import wait_until
from ..servers import ThreadedServer
from .conftest import MODEL, health
from .test_sse_e2e import engine_of

pytestmark = [pytest.mark.model, pytest.mark.e2e]

Factory = Callable[..., AbstractContextManager[ThreadedServer]]

# the client gives up after 100 ms, as an agent with a short timeout does
LEAVES_AFTER = httpx.Timeout(30.0, read=0.1)


def long_chat(**extra: Any) -> dict[str, Any]:
    """An answer that cannot end early: the end-of-text and end-of-turn tokens are banned."""
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count from one to a thousand."}],
        "logit_bias": {"0": -100, "2": -100},
        "max_tokens": 1900,
        **extra,
    }


def leave_after_100_ms(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    with httpx.Client(timeout=LEAVES_AFTER) as http, pytest.raises(httpx.ReadTimeout):
        http.post(f"{url}/v1/chat/completions", json=body, headers=headers)


def access_records(caplog: pytest.LogCaptureFixture, status: int) -> list[dict[str, Any]]:
    return [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.name == "aimiddleware.access" and json.loads(r.getMessage())["status"] == status
    ]


def test_a_client_that_leaves_a_non_streamed_answer_frees_the_model(
    reference_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "aimiddleware.access")
    with reference_factory(access_log=True) as server:
        stats = engine_of(server).stats
        leave_after_100_ms(server.url, long_chat())
        # polled, not timed: a loaded machine may take seconds over the first token
        assert wait_until(lambda: stats.generations_active == 0, timeout=120)
        # stopped, not run to its 1900 tokens; within a token of the flag
        assert stats.generations_started == 1
        assert stats.generations_cancelled == 1
        assert stats.tokens_after_cancel <= 1
        assert stats.tokens_generated < 1900
        # the instance is free: the next request is served at once
        quick = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        assert httpx.post(f"{server.url}/v1/chat/completions", json=quick, timeout=60).is_success
        assert health(server.url)["waiting"] == 0
        # the rate limiter settled the tokens to what was generated: not the reservation,
        # not nothing
        assert wait_until(lambda: len(access_records(caplog, 499)) == 1)
        [record] = access_records(caplog, 499)
    decisions = record["decisions"]
    charged = decisions["ratelimit.tokens_charged"]
    assert record["output_tokens"] < 1900
    assert charged == record["input_tokens"] + record["output_tokens"]
    assert charged < decisions["ratelimit.tokens_reserved"]


def test_a_request_whose_client_leaves_while_it_waits_leaves_the_line(
    reference_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "aimiddleware.access")
    with reference_factory(instances=1, access_log=True) as server:
        stats = engine_of(server).stats
        url = f"{server.url}/v1/chat/completions"
        with httpx.stream("POST", url, json=long_chat(stream=True), timeout=60) as busy:
            lines = busy.iter_lines()  # held: the only instance is busy
            next(lines)
            leave_after_100_ms(server.url, long_chat())
            assert wait_until(lambda: len(access_records(caplog, 499)) == 1, timeout=60)
            assert health(server.url)["waiting"] == 0
            assert stats.generations_started == 1  # it never reached the model
        [record] = access_records(caplog, 499)
    # nothing was generated for it: nothing is charged
    assert record["decisions"]["ratelimit.tokens_charged"] == 0


def test_under_an_idempotency_key_the_answer_is_completed_and_stored(
    reference_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "aimiddleware.access")
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a short story."}],
        "max_tokens": 48,
        "seed": 1,
    }
    # the credential is what tells callers apart when auth is off (their records too)
    key = {"Idempotency-Key": "cancel-test-1", "Authorization": "Bearer sk-cancel-test"}
    with reference_factory(access_log=True) as server:
        stats = engine_of(server).stats
        leave_after_100_ms(server.url, body, key)
        # the app never heard the client leave: the generation ran to its end, was stored
        assert wait_until(lambda: len(access_records(caplog, 200)) == 1, timeout=120)
        [record] = access_records(caplog, 200)
        assert record["decisions"]["idempotency.recorded"] == "stored"
        assert stats.generations_cancelled == 0
        assert stats.generations_active == 0
        retry = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=key, timeout=60)
        assert retry.status_code == 200
        assert retry.json()["usage"]["completion_tokens"] == record["output_tokens"]
        assert stats.generations_started == 1  # replayed, not generated again
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
