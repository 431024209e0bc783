from __future__ import annotations

import pytest

from aimiddleware import ConfigurationError
from aimiddleware.stores import MemoryStore, RedisStore, store_from_url


def test_memory_url() -> None:
    assert isinstance(store_from_url("memory://"), MemoryStore)


@pytest.mark.parametrize("url", ["postgres://x", "nothing", "memcached://h:1"])
def test_unknown_scheme_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="scheme"):
        store_from_url(url)


def test_error_never_echoes_a_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        store_from_url("mysql://user:s3cret@host/db")
    assert "s3cret" not in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:1/0?prefix=p:&timeout=0.2",
        "rediss://127.0.0.1:1/0",
        "unix:///tmp/redis.sock",
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
    ],
)
async def test_redis_urls_build_without_connecting(url: str) -> None:
    store = store_from_url(url)
    assert isinstance(store, RedisStore)
    assert store.shared is True
    await store.aclose()


def test_redis_repr_hides_the_url() -> None:
    store = store_from_url("redis://:hunter2@127.0.0.1:1/0?prefix=p:")
    assert "hunter2" not in repr(store)
    assert "prefix='p:'" in repr(store)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:1/0?timeout=soon", "timeout"),
        ("redis://127.0.0.1:1/0?timeout=0", "timeout"),
        ("redis://127.0.0.1:1/0?prefix=a{b}", "prefix"),
        ("redis+cluster://127.0.0.1", "cluster node"),
    ],
)
def test_bad_redis_options(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        store_from_url(url)


def test_memory_takes_no_options() -> None:
    with pytest.raises(ConfigurationError):
        store_from_url("memory://", prefix="x")
