"""The reference app refuses several workers with in-memory stores, and says why."""

from __future__ import annotations

import logging

import pytest

from reference_app.__main__ import main


def test_several_workers_with_memory_stores_are_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AIMW_REDIS_URL", raising=False)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("no server may start")

    monkeypatch.setattr("uvicorn.run", never)
    monkeypatch.setattr("reference_app.__main__._Server.run", never)
    with caplog.at_level(logging.ERROR, logger="reference_app"):
        status = main(["serve", "--workers", "2"])
    assert status == 2
    [line] = [r.getMessage() for r in caplog.records if r.name == "reference_app"]
    assert "refusing --workers 2 with in-memory stores" in line
    assert "--redis-url" in line


def test_several_workers_with_redis_are_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # serve exports the URL for its workers: registered here, so that it is undone after
    monkeypatch.setenv("AIMW_REDIS_URL", "")
    monkeypatch.delenv("AIMW_REDIS_URL")
    started: dict[str, object] = {}

    def run(app: str, **options: object) -> None:
        started.update(options, app=app)

    monkeypatch.setattr("uvicorn.run", run)
    # nothing listens on port 1: serve hands the URL to the workers without connecting
    status = main(["serve", "--workers", "2", "--redis-url", "redis://127.0.0.1:1/0"])
    assert status == 0
    assert started["workers"] == 2
