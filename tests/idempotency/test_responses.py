"""The Responses API: a streamed answer replays its typed events exactly (event names, data,
order), and a stored JSON response replays byte for byte."""

from __future__ import annotations

from typing import Any

import pytest

from aimiddleware._sse import SSEParser
from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.stores import Store
from testkit.responses_app import RESPONSES_PATH, response_events, responses_app

from .helpers import Counter, call

pytestmark = pytest.mark.anyio

CREATE = {"model": "m", "input": [{"role": "user", "content": "hi"}], "max_output_tokens": 16}


def shared(app: Any, store: Store) -> IdempotencyMiddleware:
    return IdempotencyMiddleware(app, store=store, anonymous="shared")


def typed(stream: bytes) -> list[tuple[str | None, str | None]]:
    return [(e.event, e.data) for e in SSEParser().feed(stream)]


@pytest.mark.parametrize("split", [False, True], ids=["event-per-write", "events-cut-in-two"])
async def test_a_streamed_response_replays_its_typed_events_exactly(
    store: Store, split: bool
) -> None:
    counter = Counter()
    app = shared(responses_app(counter, split=split), store)
    body = {**CREATE, "stream": True}

    first = await call(app, body, path=RESPONSES_PATH)
    second = await call(app, body, path=RESPONSES_PATH)

    assert counter.runs == 1
    assert first.body == b"".join(response_events(["Hel", "lo", "!"], id="resp_1"))
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["content-type"].startswith("text/event-stream")
    # the same events in the same order, each with its name and its data, and the same bytes
    assert typed(second.body) == typed(first.body)
    assert [name for name, _ in typed(second.body)][-1] == "response.completed"
    assert second.chunks == first.chunks
    assert second.complete


async def test_a_stored_json_response_replays_byte_for_byte(store: Store) -> None:
    counter = Counter()
    app = shared(responses_app(counter), store)

    first = await call(app, CREATE, path=RESPONSES_PATH)
    second = await call(app, CREATE, path=RESPONSES_PATH)

    assert counter.runs == 1
    assert first.json()["object"] == "response"
    assert second.headers["idempotent-replayed"] == "true"
    assert second.body == first.body
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers["content-length"] == first.headers["content-length"]
