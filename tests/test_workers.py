"""Per-process state behind several workers: each middleware warns once, at start-up.

The attack: ``--workers 4`` with memory stores gives each worker its own idempotency records,
quotas and DPoP replay cache, silently.
"""

from __future__ import annotations

import logging

import pytest

from aimiddleware import IdempotencyMiddleware
from aimiddleware._workers import warn_if_several_workers, worker_count
from aimiddleware.ratelimit import RateLimitMiddleware, Tier

from .asgi import Exchange, http_scope, recording_app, run

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("environ", "argv", "expected"),
    [
        ({}, ["uvicorn", "app:app"], 1),
        ({}, ["uvicorn", "app:app", "--workers", "4"], 4),
        ({}, ["/venv/bin/uvicorn", "--workers=3", "app:app"], 3),
        ({}, ["python", "-m", "reference_app", "serve", "--workers", "2"], 2),
        ({}, ["gunicorn", "-w", "5", "-k", "uvicorn.workers.UvicornWorker", "app:app"], 5),
        ({}, ["gunicorn", "-w6", "app:app"], 6),
        ({}, ["pytest", "-w", "5"], 1),  # -w is a worker count for gunicorn and hypercorn only
        ({"WEB_CONCURRENCY": "8"}, ["uvicorn", "app:app"], 8),
        ({"GUNICORN_CMD_ARGS": "--bind 0.0.0.0 -w 3"}, ["gunicorn", "app:app"], 3),
        ({"WEB_CONCURRENCY": "not a number"}, ["uvicorn", "app:app"], 1),
    ],
)
def test_worker_count(environ: dict[str, str], argv: list[str], expected: int) -> None:
    assert worker_count(environ, argv) == expected


def test_one_worker_says_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    monkeypatch.setattr("sys.argv", ["uvicorn", "app:app"])
    with caplog.at_level(logging.WARNING):
        assert not warn_if_several_workers("X", "state")
    assert not caplog.records


async def _first_requests(app: object) -> None:
    for _ in range(3):
        await run(app, http_scope(path="/v1/chat/completions"), b"{}")  # type: ignore[arg-type]


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aimiddleware.stores"]


async def test_idempotency_with_a_memory_store_warns_once_under_several_workers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    app = IdempotencyMiddleware(recording_app(Exchange()), anonymous="shared")
    with caplog.at_level(logging.WARNING):
        await _first_requests(app)
    [line] = _lines(caplog)
    assert line.startswith("IdempotencyMiddleware keeps its idempotency records")
    assert "4 worker processes" in line


async def test_rate_limits_in_memory_warn_once_under_several_workers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    app = RateLimitMiddleware(recording_app(Exchange()), tiers=[Tier("a", requests="10/minute")])
    with caplog.at_level(logging.WARNING):
        await _first_requests(app)
    [line] = _lines(caplog)
    assert line.startswith("RateLimitMiddleware keeps its counters")


async def test_without_several_workers_nothing_is_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    monkeypatch.setattr("sys.argv", ["uvicorn", "app:app"])
    app = IdempotencyMiddleware(
        RateLimitMiddleware(recording_app(Exchange()), tiers=[Tier("a", requests="10/minute")]),
        anonymous="shared",
    )
    with caplog.at_level(logging.WARNING):
        await _first_requests(app)
    assert not _lines(caplog)
