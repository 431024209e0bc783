"""Behaviour of IdempotencyMiddleware on the memory store, real Redis and a real Redis Cluster."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from aimiddleware import Principal, set_principal
from aimiddleware.context import Message, Receive, Scope, Send, get_annotations
from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.stores import Store

from .helpers import BODY, Counter, CountingStore, call, chat_app, scope_for

pytestmark = pytest.mark.anyio

JSON_HEADERS = [(b"content-type", b"application/json")]


def shared(app: object, store: Store, **options: object) -> IdempotencyMiddleware:
    return IdempotencyMiddleware(app, store=store, anonymous="shared", **options)  # type: ignore[arg-type]


async def test_replay_is_byte_identical_and_marked(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter), store)
    first = await call(app)
    second = await call(app)
    assert counter.runs == 1
    assert first.status == second.status == 200
    assert second.body == first.body
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.headers["x-run"] == "1"
    assert second.headers["content-type"] == first.headers["content-type"]
    # the retention is advertised on both, Set-Cookie is never stored
    assert first.headers["idempotency-retention"] == "86400"
    assert second.headers["idempotency-retention"] == "86400"
    assert "set-cookie" in first.headers
    assert "set-cookie" not in second.headers


async def test_json_key_order_and_whitespace_do_not_change_the_fingerprint(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter), store)
    await call(app, b'{"model": "m", "messages": [], "stream": false}')
    again = await call(app, b'{"stream":false,"messages":[ ],\n"model":"m"}')
    assert counter.runs == 1
    assert again.headers["idempotent-replayed"] == "true"


async def test_same_key_different_payload_is_422(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter), store)
    await call(app)
    scope = scope_for()
    other = await call(app, {**BODY, "max_tokens": 5}, scope=scope)
    assert other.status == 422
    assert other.headers["content-type"] == "application/problem+json"
    problem = other.json()
    assert problem["status"] == 422
    assert problem["title"] == "Idempotency-Key is already used"
    assert problem["type"].endswith("#idempotency-key-reused")
    assert get_annotations(scope)["aimiddleware.idempotency.outcome"] == "mismatch"
    # another path or query with the same key is a different request too
    assert (await call(app, query=b"x=1")).status == 422
    assert counter.runs == 1


async def test_fifty_concurrent_identical_requests_run_once(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter, delay=0.3), store)
    results = await asyncio.gather(*(call(app) for _ in range(50)))
    assert counter.runs == 1
    statuses = sorted(r.status for r in results)
    assert statuses.count(200) == 1
    assert statuses.count(409) == 49
    conflict = next(r for r in results if r.status == 409)
    assert conflict.headers["retry-after"] == "1"
    assert conflict.json()["title"] == "A request is outstanding for this Idempotency-Key"
    # once the first completed, every retry gets its response
    retry = await call(app)
    winner = next(r for r in results if r.status == 200)
    assert retry.body == winner.body
    assert counter.runs == 1


async def test_tenants_never_see_each_others_records(store: Store) -> None:
    counter = Counter()

    async def as_tenant(name: str) -> dict[str, object]:
        scope = scope_for(key="same-key")
        set_principal(scope, Principal(id=name))
        return (await call(app, scope=scope)).json()  # type: ignore[no-any-return]

    app = IdempotencyMiddleware(chat_app(counter), store=store)
    alice, bob = await as_tenant("alice"), await as_tenant("bob")
    assert counter.runs == 2
    assert alice["run"] != bob["run"]
    assert (await as_tenant("alice"))["run"] == alice["run"]
    assert (await as_tenant("bob"))["run"] == bob["run"]
    assert counter.runs == 2


async def test_principal_resolver_scopes_records(store: Store) -> None:
    counter = Counter()

    def resolver(scope: dict[str, object]) -> str | None:
        for name, value in scope["headers"]:  # type: ignore[attr-defined]
            if name == b"x-tenant":
                return value.decode()  # type: ignore[no-any-return]
        return None

    app = IdempotencyMiddleware(chat_app(counter), store=store, principal_resolver=resolver)
    a1 = await call(app, headers=[(b"x-tenant", b"a")])
    b1 = await call(app, headers=[(b"x-tenant", b"b")])
    a2 = await call(app, headers=[(b"x-tenant", b"a")])
    assert counter.runs == 2
    assert a2.body == a1.body != b1.body


async def test_anonymous_requests_pass_through_by_default(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    counter = Counter()
    app = IdempotencyMiddleware(chat_app(counter), store=store)
    scope = scope_for()
    with caplog.at_level(logging.WARNING, "aimiddleware.idempotency"):
        await call(app, scope=scope)
        await call(app)
    assert counter.runs == 2
    assert get_annotations(scope)["aimiddleware.idempotency.outcome"] == "anonymous"
    assert len([r for r in caplog.records if "no principal" in r.getMessage()]) == 1


async def test_app_exception_releases_the_key(store: Store) -> None:
    counter = Counter()
    failing = shared(chat_app(counter, fail=True), store)
    with pytest.raises(RuntimeError, match="the model crashed"):
        await call(failing)
    # the same store behind a healthy app: the retry runs again
    healthy = shared(chat_app(counter), store)
    retry = await call(healthy)
    assert retry.status == 200
    assert "idempotent-replayed" not in retry.headers
    assert counter.runs == 2


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_error_statuses_are_not_stored(store: Store, status: int) -> None:
    counter = Counter()
    app = shared(chat_app(counter, status=status), store)
    scope = scope_for()
    assert (await call(app, scope=scope)).status == status
    assert get_annotations(scope)["aimiddleware.idempotency.recorded"] == "status"
    assert (await call(app)).status == status
    assert counter.runs == 2


async def test_no_store_statuses_is_configurable(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter, status=503), store, no_store_statuses=[500])
    await call(app)
    replay = await call(app)
    assert replay.status == 503
    assert replay.headers["idempotent-replayed"] == "true"
    assert counter.runs == 1


async def test_round_trips_fresh_and_replay(store: Store) -> None:
    counting = CountingStore(store)
    app = shared(chat_app(Counter()), counting)
    await call(app)
    assert counting.calls == ["claim", "replace"]
    counting.calls.clear()
    await call(app)
    assert counting.calls == ["claim"]


async def test_the_raw_key_never_reaches_the_store(store: Store) -> None:
    counting = CountingStore(store)
    seen: list[str] = []
    original = counting.claim

    async def spy(key: str, value: bytes, ttl: float) -> bytes | None:
        seen.append(key)
        assert b"sk-secret-key" not in value
        return await original(key, value, ttl)

    counting.claim = spy  # type: ignore[method-assign]
    scope = scope_for(key="sk-secret-key")
    await call(shared(chat_app(Counter()), counting), scope=scope)
    assert seen
    assert all("sk-secret-key" not in k for k in seen)
    assert all("sk-secret-key" not in str(v) for v in get_annotations(scope).values())


async def test_a_secret_changes_the_store_keys(store: Store) -> None:
    plain, keyed = CountingStore(store), CountingStore(store)
    keys: dict[str, list[str]] = {"plain": [], "keyed": []}
    for name, counting in (("plain", plain), ("keyed", keyed)):
        original = counting.claim

        async def spy(
            key: str, value: bytes, ttl: float, _n: str = name, _o=original
        ) -> bytes | None:  # type: ignore[no-untyped-def]
            keys[_n].append(key)
            return await _o(key, value, ttl)

        counting.claim = spy  # type: ignore[method-assign]
    await call(shared(chat_app(Counter()), plain), key="k")
    await call(shared(chat_app(Counter()), keyed, secret="0123456789abcdef-secret"), key="k")
    assert keys["plain"] != keys["keyed"]


async def test_methods_and_paths_select_what_is_covered(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter), store, methods=["POST"], paths=["/v1/*"])
    await call(app, method="PATCH")
    await call(app, method="PATCH")
    assert counter.runs == 2  # PATCH not covered here
    await call(app)
    await call(app)
    assert counter.runs == 3
    exact = shared(chat_app(counter), store, paths=["/v1/other"])
    await call(exact, key="k2")
    await call(exact, key="k2")
    assert counter.runs == 5


async def test_requests_without_a_key_pass_through(store: Store) -> None:
    counting = CountingStore(store)
    counter = Counter()
    app = shared(chat_app(counter), counting)
    await call(app, key=None)
    await call(app, key=None)
    assert counter.runs == 2
    assert counting.calls == []


async def test_required_key_missing_is_400(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter), store, require_key=True)
    result = await call(app, key=None)
    assert result.status == 400
    assert result.headers["content-type"] == "application/problem+json"
    problem = result.json()
    assert {name: problem[name] for name in ("type", "title", "status", "detail")} == {
        "type": "https://github.com/aimiddleware/aimiddleware/blob/main/docs/idempotency.md"
        "#idempotency-key-missing",
        "title": "Idempotency-Key is missing",
        "status": 400,
        "detail": "This operation is idempotent and it requires correct usage of Idempotency Key.",
    }
    # rendered by aimiddleware.errors: the request id is a member, as on every problem
    assert problem["request_id"] == result.headers["x-request-id"]
    assert result.headers["cache-control"] == "no-store"
    assert counter.runs == 0


@pytest.mark.parametrize(
    "raw",
    [b"", b'""', b"a" * 256, b"caf\xc3\xa9", b'"unterminated', b"with space", b'"a"b'],
)
async def test_invalid_keys_are_400(store: Store, raw: bytes) -> None:
    counter = Counter()
    result = await call(shared(chat_app(counter), store), key=raw)
    assert result.status == 400
    assert result.json()["type"].endswith("#idempotency-key-invalid")
    assert counter.runs == 0


async def test_two_key_headers_are_400(store: Store) -> None:
    result = await call(
        shared(chat_app(Counter()), store), headers=[(b"idempotency-key", b"other")]
    )
    assert result.status == 400


async def test_quoted_and_bare_forms_name_the_same_key(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter), store)
    await call(app, key=b'"8e03978e-40d5"')
    replay = await call(app, key=b"8e03978e-40d5")
    assert replay.headers["idempotent-replayed"] == "true"
    assert counter.runs == 1


async def test_large_bodies_are_passed_on_but_not_stored(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter), store, max_record_bytes=64)
    first = await call(app)
    assert first.status == 200
    assert len(first.body) > 64
    await call(app)
    assert counter.runs == 2


async def test_non_http_scopes_pass_straight_through(store: Store) -> None:
    seen: list[str] = []

    async def inner(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(str(scope["type"]))

    app = shared(inner, store)
    await app({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


async def test_the_body_reaches_the_app_unchanged(store: Store) -> None:
    counter = Counter()
    result = await call(shared(chat_app(counter), store), {"model": "x", "n": [1, 2]})
    assert json.loads(result.body)["echo"] == {"model": "x", "n": [1, 2]}


async def test_reordered_json_during_the_first_request_waits_then_replays(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter, delay=0.3), store)
    first = asyncio.create_task(call(app, b'{"model": "m", "messages": []}'))
    await asyncio.wait_for(counter.started.wait(), 5)
    reordered = b'{"messages":[],"model":"m"}'
    assert (await call(app, reordered)).status == 409  # the lease only knows the bytes as sent
    original = await first
    replay = await call(app, reordered)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.body == original.body
    assert counter.runs == 1


async def test_the_record_is_stored_before_the_client_sees_the_end(store: Store) -> None:
    counter = Counter()
    app = shared(chat_app(counter), store)
    seen_at_end: list[int] = []

    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            # a retry sent the moment the response arrives
            seen_at_end.append((await call(app)).status)

    first = await call(app, on_send=on_send)
    assert first.status == 200
    assert seen_at_end == [200]
    assert counter.runs == 1


async def test_a_lone_surrogate_in_the_body_is_fingerprinted_not_a_500(store: Store) -> None:
    # "\ud800" is valid JSON that no UTF-8 encoder accepts: the canonical form must still be
    # written, and the same body again is the same request
    runs = 0

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal runs
        runs += 1
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": b'{"id": "%d"}' % runs})

    app = shared(answer, store)
    body = b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}'
    first = await call(app, body)
    again = await call(app, b'{"messages":[{"content":"\\ud800","role":"user"}],"model":"m"}')
    other = await call(app, b'{"model": "m", "messages": [{"role": "user", "content": "\\ud801"}]}')
    assert first.status == 200
    assert runs == 1
    assert again.headers["idempotent-replayed"] == "true"
    assert again.body == first.body
    assert other.status == 422
