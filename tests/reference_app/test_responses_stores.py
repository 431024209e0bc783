"""Stored responses behind OAuth (per principal, under the ``chat`` scope) and in Redis."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
import redis

from reference_app import Settings
from reference_app.auth import mint

from ..servers import RedisServer
from .conftest import MODEL, serve_reference

pytestmark = [pytest.mark.model, pytest.mark.e2e]


def test_responses_need_the_chat_scope_and_stay_with_their_user(tmp_path: Path) -> None:
    settings = {"auth": True, "auth_key_file": tmp_path / "issuer-key.json"}
    with serve_reference(**settings) as server:
        issuer = Settings(**settings, port=server.port)

        def client(scope: str, subject: str) -> openai.OpenAI:
            token = mint(issuer, scope=scope, client_id="app", subject=subject)
            return openai.OpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0)

        with (
            client("chat", "alice") as alice,
            client("chat", "bob") as bob,
            client("models:read", "alice") as reader,
        ):
            mine = alice.responses.create(model=MODEL, input="Hi.", max_output_tokens=4)
            for attempt in (
                lambda: reader.responses.create(model=MODEL, input="Hi.", max_output_tokens=4),
                lambda: reader.responses.retrieve(mine.id),
                lambda: reader.responses.delete(mine.id),
            ):
                with pytest.raises(openai.PermissionDeniedError) as refused:
                    attempt()
                assert refused.value.code == "insufficient_scope"
            # another user of the same OAuth client is another caller
            with pytest.raises(openai.NotFoundError):
                bob.responses.retrieve(mine.id)
            with pytest.raises(openai.NotFoundError):
                bob.responses.delete(mine.id)
            assert alice.responses.retrieve(mine.id).output_text == mine.output_text
            alice.responses.delete(mine.id)
            with pytest.raises(openai.NotFoundError):
                alice.responses.retrieve(mine.id)


@pytest.mark.redis
def test_stored_responses_live_in_redis_with_their_ttl(redis_url: str) -> None:
    with (
        serve_reference(redis_url=redis_url, response_ttl=120) as server,
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0) as client,
        redis.Redis.from_url(redis_url) as direct,
    ):
        created = client.responses.create(model=MODEL, input="Hi.", max_output_tokens=4)
        keys = [k for k in direct.scan_iter() if created.id.encode() in k]
        assert len(keys) == 1
        assert 0 < direct.ttl(keys[0]) <= 120
        # the id alone is not the key: the caller's hash is part of it
        assert keys[0] != created.id.encode()
        assert client.responses.retrieve(created.id).id == created.id
        client.responses.delete(created.id)
        assert direct.exists(keys[0]) == 0


@pytest.mark.redis
def test_a_store_fault_fails_closed(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"model": MODEL, "input": "Hi.", "max_output_tokens": 4}
    with serve_reference(redis_url=own_redis.url) as server:
        url = f"{server.url}/v1/responses"
        kept = httpx.post(url, json=body, timeout=30).json()
        own_redis.stop()
        down = httpx.post(url, json=body, timeout=30)
        assert down.status_code == 503
        assert down.headers["retry-after"] == "1"
        # a 5xx of the app keeps only its status once normalised (docs/normalize.md)
        assert down.json()["error"]["code"] == "service_unavailable"
        assert httpx.get(f"{url}/{kept['id']}", timeout=30).status_code == 503
        streamed = httpx.post(url, json={**body, "stream": True}, timeout=30)
        # no store: nothing to keep, nothing to fail
        unkept = httpx.post(url, json={**body, "store": False}, timeout=30)
    assert unkept.status_code == 200
    events = [json.loads(f.split("\ndata: ")[1]) for f in streamed.text.split("\n\n")[:-1]]
    error, failed = events[-2:]
    assert error["type"] == "error"
    assert error["code"] == "response_store_unavailable"
    assert failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    assert "responses: the store is unavailable" in caplog.text
