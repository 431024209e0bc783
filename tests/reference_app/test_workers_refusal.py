"""The reference app refuses several workers with in-memory stores, and says why."""

from __future__ import annotations

import logging
import os
import socket

import pytest
import uvicorn

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
    started: dict[str, object] = {}

    def run_workers(config: uvicorn.Config, sock: socket.socket) -> None:
        started.update(workers=config.workers, app=config.app)
        sock.close()

    monkeypatch.setattr("reference_app.__main__.run_workers", run_workers)
    # nothing listens on port 1: serve hands the URL to the workers without connecting;
    # port 0, so that the socket it binds for them is the kernel's choice
    argv = ["serve", "--workers", "2", "--port", "0", "--redis-url", "redis://127.0.0.1:1/0"]
    before = dict(os.environ)
    try:
        status = main(argv)
    finally:
        # serve exports its settings for the worker processes: none may leak into other tests
        for key in set(os.environ) - set(before):
            del os.environ[key]
    assert "AIMW_PORT" not in os.environ
    assert status == 0
    assert started["workers"] == 2
