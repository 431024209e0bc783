"""OAuth's in-process caches are bounded: token validations, and the DPoP replay cache."""

from __future__ import annotations

import logging

import pytest

from aimiddleware.oauth import DPoP, Introspection
from aimiddleware.stores import MemoryStore

from .apps import bearer, client_for, middleware
from .issuer import INTROSPECTION_CLIENT, Issuer
from .test_dpop import Client, dpop_headers, post

pytestmark = pytest.mark.anyio


async def test_token_cache_stays_within_cache_size_least_recently_used_first(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    mw = middleware(issuer, cache_size=5)
    kept = issuer.mint(sub="kept")
    async with client_for(mw) as client:
        with caplog.at_level(logging.WARNING, logger="aimiddleware.cache"):
            for i in range(20):  # a caller with a fresh token per request
                assert (await client.post("/v1/chat/completions", headers=bearer(kept),
                                          json={})).status_code == 200  # fmt: skip
                other = issuer.mint(sub=f"user-{i}")
                r = await client.post("/v1/chat/completions", headers=bearer(other), json={})
                assert r.status_code == 200
    cache = mw._auth._cache
    assert len(cache) == 5
    assert cache.evictions == 16
    # the token in use on every other request was never the least recently used one
    from aimiddleware.oauth._authenticate import token_digest

    assert token_digest(kept) in cache
    [line] = [r.getMessage() for r in caplog.records if r.name == "aimiddleware.cache"]
    assert line.startswith("oauth token cache is full")


async def test_inactive_token_cache_stays_within_cache_size(issuer: Issuer) -> None:
    client_id, secret = INTROSPECTION_CLIENT
    introspection = Introspection(client_id=client_id, client_secret=secret)
    mw = middleware(issuer, introspection=introspection, cache_size=4)
    async with client_for(mw) as client:
        for i in range(12):  # made-up opaque tokens, each one new
            r = await client.post("/v1/chat/completions", headers=bearer(f"made-up-{i}"), json={})
            assert r.status_code == 401
    assert len(mw._auth._inactive) == 4
    assert mw._auth._inactive.evictions == 8


def test_the_default_dpop_replay_cache_is_bounded() -> None:
    store = DPoP().store
    assert isinstance(store, MemoryStore)
    assert store.max_entries == 100_000
    assert store.max_bytes == 64 * 1024 * 1024


async def test_dpop_replay_cache_in_memory_warns_once_under_several_workers(
    issuer: Issuer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    me = Client()
    token = issuer.mint(cnf={"jkt": me.jkt})
    with caplog.at_level(logging.WARNING, logger="aimiddleware.stores"):
        async with client_for(middleware(issuer, dpop=DPoP())) as client:
            for _ in range(3):
                assert (await post(client, dpop_headers(token, me.proof(token)))).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "aimiddleware.stores"]
    assert len(lines) == 1
    assert lines[0].startswith("DPoP keeps its proof replay cache")
    assert "3 worker processes" in lines[0]
