"""Concurrency done right: disconnects free the instance, a full queue is a 503, deadlines hold,
the line is first come first served, and the CLI starts and stops cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import anyio
import httpx
import pytest

from reference_app import Settings, create_app

from ..live import wait_until
from ..servers import ThreadedServer
from .conftest import LONG_SCHEMA, MODEL, health

pytestmark = [pytest.mark.model, pytest.mark.e2e]

Factory = Callable[..., AbstractContextManager[ThreadedServer]]


def long_chat(stream: bool = True) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "List numbers."}],
        "response_format": LONG_SCHEMA,
        "max_tokens": 1900,
        "stream": stream,
    }


def test_disconnect_mid_stream_stops_generation_and_frees_the_instance(
    reference_server: ThreadedServer,
) -> None:
    url = reference_server.url
    before = health(url)
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=long_chat(), timeout=30) as r:
        lines = r.iter_lines()
        received = [next(lines) for _ in range(6)]  # a few events, then hang up
        assert health(url)["generations_active"] == 1
    assert any(line.startswith("data: ") for line in received)
    assert wait_until(lambda: health(url)["generations_active"] == 0)
    after = health(url)
    assert after["generations_cancelled"] == before["generations_cancelled"] + 1
    # the instance is free: the next request is served, not queued
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    r = httpx.post(f"{url}/v1/chat/completions", timeout=30, json=body)
    assert r.status_code == 200
    assert health(url)["waiting"] == 0


def test_full_queue_answers_503_with_retry_after(reference_factory: Factory) -> None:
    with reference_factory(instances=1, max_queue=0) as server:
        with httpx.stream(
            "POST", f"{server.url}/v1/chat/completions", json=long_chat(), timeout=30
        ) as r:
            # hold the iterator: dropping it closes the connection, which cancels the stream
            lines = r.iter_lines()
            next(lines)  # the only instance is now busy
            busy = httpx.post(
                f"{server.url}/v1/chat/completions", json=long_chat(False), timeout=30
            )
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        # a 5xx says nothing but its status once normalised (docs/normalize.md)
        assert busy.json()["error"]["code"] == "service_unavailable"


def test_deadline_before_the_stream_is_a_504(reference_factory: Factory) -> None:
    # the only instance is busy, so the second request spends its whole deadline in the line
    with reference_factory(instances=1, generation_timeout=2) as server:
        url = f"{server.url}/v1/chat/completions"
        with httpx.stream("POST", url, json=long_chat(), timeout=30) as first:
            lines = first.iter_lines()  # held: dropping it would hang up
            next(lines)
            r = httpx.post(url, json=long_chat(False), timeout=30)
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "gateway_timeout"
        assert wait_until(lambda: health(server.url)["generations_active"] == 0)


def test_deadline_after_the_stream_started_is_an_error_event(reference_factory: Factory) -> None:
    with reference_factory(generation_timeout=2) as server:
        r = httpx.post(f"{server.url}/v1/chat/completions", json=long_chat(), timeout=30)
        assert r.status_code == 200
        events = r.text.split("\n\n")[:-1]
        assert events[-1] == "data: [DONE]"
        error = json.loads(events[-2].removeprefix("data: "))
        assert error["error"]["code"] == "generation_timeout"
        assert len(events) > 3  # tokens streamed before the deadline


async def _poll_health(url: str, condition: Callable[[dict[str, Any]], bool]) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        with anyio.fail_after(30):
            while not condition((await http.get(f"{url}/health")).json()):  # noqa: ASYNC110
                await anyio.sleep(0.02)  # another process: nothing to wait on but its answers


@pytest.mark.anyio
async def test_waiting_requests_are_served_first_come_first_served(
    reference_factory: Factory,
) -> None:
    with reference_factory(instances=1) as server:
        started: list[str] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            queued = anyio.Event()

            async def run(name: str, body: dict[str, Any]) -> None:
                async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                    lines = r.aiter_lines()
                    await anext(lines)
                    started.append(name)
                    if name == "first":
                        await queued.wait()  # then hang up: the line moves on
                        return
                    async for _ in lines:
                        pass

            short = {
                "model": MODEL,
                "messages": [{"role": "user", "content": "Count."}],
                "max_tokens": 4,
                "stream": True,
            }
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, "first", long_chat())
                await _poll_health(server.url, lambda h: h["generations_active"] == 1)
                for waiting, name in enumerate(("second", "third", "fourth"), start=1):
                    tg.start_soon(run, name, short)
                    # the next one is sent only once this one stands in the line
                    await _poll_health(server.url, lambda h, n=waiting: h["waiting"] >= n)
                queued.set()
        assert started == ["first", "second", "third", "fourth"]


@pytest.mark.anyio
async def test_health_is_503_while_the_model_loads() -> None:
    app = create_app(Settings(auth=False))  # no lifespan: the model never loads
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/health")
        assert r.status_code == 503
        assert r.json()["status"] == "loading"
        chat = await c.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]},
        )
        assert chat.status_code == 503
        assert chat.json()["error"]["code"] == "service_unavailable"
        assert chat.headers["retry-after"] == "1"


def test_cli_serves_on_port_0_says_where_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "reference_app", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        seen: list[str] = []
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            seen.append(line)
            if "model ready" in line or not line:
                break
        ports = [re.search(r"serving on http://127\.0\.0\.1:(\d+) ", line) for line in seen]
        [port] = [int(found.group(1)) for found in ports if found]
        assert port != 0
        assert any("loading SmolLM2-135M-Instruct" in line for line in seen), seen
        assert any("model ready on CPU" in line or "model ready on GPU" in line for line in seen)
        health = httpx.get(f"http://127.0.0.1:{port}/health")
        assert health.status_code == 200
        assert health.json()["pid"] == process.pid  # the server that said where it listens
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
        assert process.returncode == 0
        assert "stopped" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
