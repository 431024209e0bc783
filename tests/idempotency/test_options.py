"""Key parsing, fingerprints and option validation."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from aimiddleware import ConfigurationError, _config
from aimiddleware.context import read_body
from aimiddleware.idempotency import IdempotencyMiddleware, IdempotencyOptions
from aimiddleware.idempotency._keys import Hasher, InvalidKeyError, parse_key
from aimiddleware.stores import MemoryStore

from .helpers import scope_for


async def _noop(scope: Any, receive: Any, send: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        (b"8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        (b'"with space"', "with space"),
        (b'"esc\\"aped\\\\"', 'esc"aped\\'),
        (b"  padded  ", "padded"),
        (b"a" * 255, "a" * 255),
    ],
)
def test_parse_key_accepts_sf_strings_and_bare_tokens(raw: bytes, key: str) -> None:
    assert parse_key(raw) == key


@pytest.mark.parametrize(
    "raw", [b"", b'""', b"a" * 256, b'"' + b"a" * 256 + b'"', b"\x01", b'"a\\n"', b'a"b']
)
def test_parse_key_rejects(raw: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        parse_key(raw)


async def _fingerprint(
    body: bytes, hasher: Hasher, content_type: bytes = b"application/json", **options: Any
) -> str:
    scope = scope_for(**options)
    scope["headers"] = [(b"content-type", content_type), *scope["headers"][1:]]
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    await read_body(scope, receive)
    return hasher.canonical_fingerprint(scope, body)


@pytest.mark.anyio
async def test_fingerprint_canonicalises_json_and_covers_method_path_query() -> None:
    hasher = Hasher(None)
    base = await _fingerprint(b'{"a": 1, "b": [1, 2]}', hasher)
    assert await _fingerprint(b'{"b":[1,2],\n "a":1}', hasher) == base
    assert await _fingerprint(b'{"a": 2, "b": [1, 2]}', hasher) != base
    assert await _fingerprint(b'{"a": 1, "b": [2, 1]}', hasher) != base
    assert await _fingerprint(b'{"a": 1, "b": [1, 2]}', hasher, method="PATCH") != base
    assert await _fingerprint(b'{"a": 1, "b": [1, 2]}', hasher, path="/v1/other") != base
    assert await _fingerprint(b'{"a": 1, "b": [1, 2]}', hasher, query=b"x=1") != base
    keyed = await _fingerprint(b'{"a": 1, "b": [1, 2]}', Hasher(b"0123456789abcdef"))
    assert keyed != base


@pytest.mark.anyio
async def test_non_json_bodies_are_hashed_as_bytes() -> None:
    hasher = Hasher(None)
    text = b"text/plain"
    assert await _fingerprint(b'{"a":1}', hasher, text) != await _fingerprint(
        b'{"a": 1}', hasher, text
    )
    assert await _fingerprint(b'{"a":1}', hasher, b"application/vnd.x+json") == (
        await _fingerprint(b'{"a": 1}', hasher, b"application/vnd.x+json")
    )


@pytest.mark.parametrize(
    "options",
    [
        {"store": 42},
        {"store": "ftp://nowhere"},
        {"methods": "POST"},
        {"methods": []},
        {"paths": "/v1"},
        {"paths": ["v1"]},
        {"anonymous": "everyone"},
        {"on_disconnect": "ignore"},
        {"on_store_error": "maybe"},
        {"ttl": 0},
        {"ttl": True},
        {"lease_ttl": 0.5},
        {"poll_interval": -1},
        {"no_store_statuses": [99]},
        {"retry_after": -1},
        {"max_record_bytes": 0},
        {"max_record_bytes": 1.5},
        {"max_request_bytes": 0},
        {"require_key": 1},
        {"no_store_statuses": "500"},
        {"secret": "short"},
        {"principal_resolver": "not callable"},
        {"problem_type_base": "https://x/y#frag"},
    ],
)
def test_bad_options_raise_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        IdempotencyMiddleware(_noop, **options)


def test_the_options_object_is_validated_and_frozen() -> None:
    with pytest.raises(ConfigurationError, match="lease_ttl"):
        IdempotencyOptions(lease_ttl=0.5)
    options = IdempotencyOptions(store="memory://", methods=["post"], lease_ttl=9, ttl=60)
    assert options.method_set == frozenset({"POST"})
    assert options.heartbeat == 3.0
    assert options.ttl == 60.0
    assert options.unstored_statuses == frozenset({429, *range(500, 600)})
    with pytest.raises(AttributeError):
        options.ttl = 1.0  # type: ignore[misc]


def test_the_middleware_takes_the_options_object_or_keywords_not_both() -> None:
    options = IdempotencyOptions(anonymous="shared", ttl=60)
    middleware = IdempotencyMiddleware(_noop, options)
    assert middleware.config is options
    assert IdempotencyMiddleware(_noop, anonymous="shared", ttl=60).config == options
    with pytest.raises(ConfigurationError, match="not both"):
        IdempotencyMiddleware(_noop, options, ttl=60)
    with pytest.raises(TypeError):
        IdempotencyMiddleware(_noop, ttl_seconds=60)


def test_a_store_in_the_options_object_is_the_one_used() -> None:
    store = MemoryStore()
    assert IdempotencyMiddleware(_noop, IdempotencyOptions(store=store)).store is store


@pytest.fixture
def fresh_deprecations(monkeypatch: pytest.MonkeyPatch) -> None:
    # each old name warns once per process: start from a process that has not warned yet
    monkeypatch.setattr(_config, "_WARNED", set())


@pytest.mark.usefixtures("fresh_deprecations")
def test_max_body_bytes_is_the_old_name_of_max_record_bytes_and_warns_once() -> None:
    with pytest.warns(DeprecationWarning, match=r"max_body_bytes=\.\.\.\) is deprecated"):
        old = IdempotencyMiddleware(_noop, max_body_bytes=64)
    assert old.config.max_record_bytes == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = IdempotencyMiddleware(_noop, max_body_bytes=32)  # once per process
        new = IdempotencyMiddleware(_noop, max_record_bytes=64)
    assert again.config.max_record_bytes == 32
    assert new.config.max_record_bytes == 64


@pytest.mark.usefixtures("fresh_deprecations")
def test_the_old_and_the_new_name_at_once_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="max_body_bytes is the old name"):
        IdempotencyMiddleware(_noop, max_body_bytes=64, max_record_bytes=64)


def test_repr_hides_the_secret() -> None:
    secret = "s3cr3t-value-0123456789"
    middleware = IdempotencyMiddleware(_noop, secret=secret)
    assert secret not in repr(middleware)
    assert "***" in repr(middleware)
    assert "MemoryStore(max_entries=" in repr(middleware)
    assert secret not in repr(middleware.config)


async def _lifespan(app: Any) -> list[str]:
    sent: list[str] = []
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    return sent


@pytest.mark.anyio
async def test_a_store_built_from_a_url_is_closed_at_shutdown() -> None:
    from starlette.applications import Starlette

    closed: list[str] = []
    owned = IdempotencyMiddleware(Starlette(), store="memory://")
    given_store = MemoryStore()
    given = IdempotencyMiddleware(Starlette(), store=given_store)

    async def record(name: str) -> None:
        closed.append(name)

    owned.store.aclose = lambda: record("owned")  # type: ignore[method-assign]
    given_store.aclose = lambda: record("given")  # type: ignore[method-assign]
    assert await _lifespan(owned) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    await _lifespan(given)
    assert closed == ["owned"]  # a store passed in belongs to the caller


def test_forked_workers_draw_their_own_lease_tokens() -> None:
    import os
    import warnings

    from aimiddleware.idempotency import middleware

    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() beside threads; the child only writes and exits
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child reports its token prefix and leaves at once
        os.write(write, middleware._PROCESS.encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child
    assert child != middleware._PROCESS
