"""``paths`` match the route path: a retried key under a prefix runs the endpoint once."""

from __future__ import annotations

import pytest

from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.stores import MemoryStore

from ..mounts import WAYS, client_for
from .helpers import BODY, PATH, Counter, chat_app

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("paths", [[PATH], ["/v1/*"], ["/v1/{kind}/completions"]])
async def test_a_retried_key_is_replayed_under_a_prefix(way: str, paths: list[str]) -> None:
    counter = Counter()
    mw = IdempotencyMiddleware(
        chat_app(counter), store=MemoryStore(), anonymous="shared", paths=paths
    )
    headers = {"idempotency-key": "retry-1"}
    async with client_for(mw, way) as client:
        first = await client.post(PATH, json=BODY, headers=headers)
        second = await client.post(PATH, json=BODY, headers=headers)
    assert counter.runs == 1
    assert first.status_code == second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content


@pytest.mark.parametrize("way", WAYS)
async def test_paths_outside_the_list_are_not_covered_under_a_prefix(way: str) -> None:
    counter = Counter()
    mw = IdempotencyMiddleware(
        chat_app(counter), store=MemoryStore(), anonymous="shared", paths=["/v2/*"]
    )
    headers = {"idempotency-key": "retry-1"}
    async with client_for(mw, way) as client:
        await client.post(PATH, json=BODY, headers=headers)
        second = await client.post(PATH, json=BODY, headers=headers)
    assert counter.runs == 2
    assert "idempotent-replayed" not in second.headers
