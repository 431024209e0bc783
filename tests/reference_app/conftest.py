"""The reference app with the real SmolLM2 model, served by uvicorn on a loopback port."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from reference_app import DemoTokenIssuer, Settings, create_app
from reference_app.telemetry import Telemetry

from ..servers import ROOT, ThreadedServer, bound_socket, port_of
from ..tracing.conftest import assert_no_secrets

MODEL = "SmolLM2-135M-Instruct"


def healthy_pid(url: str, owner: Callable[[int], bool] | None = None) -> int | None:
    """The pid ``/health`` at ``url`` answers with once ready, None while it loads.

    The answer must come from a process ``owner`` accepts (by default this one, which runs the
    in-thread servers): a server there that is not the test's raises at once.
    """
    owned = owner if owner is not None else (lambda pid: pid == os.getpid())
    response = httpx.get(f"{url}/health", timeout=2)
    pid = response.json().get("pid") if response.status_code in (200, 503) else None
    if not isinstance(pid, int) or not owned(pid):
        raise RuntimeError(f"{url} is answered by another server: {response.text[:200]}")
    return pid if response.status_code == 200 else None


def wait_ready(url: str, timeout: float = 60.0, *, workers: int = 1) -> None:
    """Until ``workers`` distinct processes of this one behind ``url`` have answered
    ``/health`` with 200: each uvicorn worker loads its own model, and a new connection may
    reach any of them."""
    deadline = time.monotonic() + timeout
    ready: set[int] = set()
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            pid = healthy_pid(url)
            if pid is not None:
                ready.add(pid)
                if len(ready) >= workers:
                    return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready ({len(ready)} of {workers} workers)")


# The demo tiers (60 requests/min, 2 in flight, 1 USD a day for anonymous callers) would turn
# the load that other tests create into 429s; those tests get limits they never reach, with the
# limiter still in the stack. The rate-limit tests pass their own.
UNREACHED_LIMITS: dict[str, Any] = {
    "human_requests": "1000000/minute",
    "human_tokens": "1000000000/minute",
    "human_concurrency": 1000,
    "human_budget": "1000000/day",
}


@contextmanager
def serve_reference(
    *,
    demo_tokens: DemoTokenIssuer | None = None,
    sock: socket.socket | None = None,
    **settings: Any,
) -> Iterator[ThreadedServer]:
    """Start a reference app with these settings; yields the running server.

    It listens on ``sock`` (by default a socket bound here), whose port is its ``port``
    setting: a server with auth on must know it up front, it is the tokens' audience. Auth is
    off unless asked for: these servers test the API itself, the OAuth end-to-end tests
    (test_oauth_e2e.py) start their own with auth on.
    """
    listener = sock if sock is not None else bound_socket()
    try:
        settings = {**UNREACHED_LIMITS, **settings, "port": port_of(listener)}
        settings.setdefault("auth", False)
        app = create_app(Settings(**settings), demo_tokens=demo_tokens)
    except BaseException:
        listener.close()
        raise
    with ThreadedServer(app, sock=listener) as server:
        wait_ready(server.url)
        yield server


@pytest.fixture(scope="session")
def reference_server() -> Iterator[ThreadedServer]:
    """One reference app with the default settings, shared by the session."""
    with serve_reference() as server:
        yield server


@pytest.fixture
def reference_factory() -> Callable[..., AbstractContextManager[ThreadedServer]]:
    """Start a reference app with other settings (for queue, deadline and instance tests)."""
    return serve_reference


@pytest.fixture
def client(reference_server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{reference_server.url}/v1", api_key="none", max_retries=0) as c:
        yield c


@pytest.fixture
async def async_client(reference_server: ThreadedServer) -> Any:
    c = openai.AsyncOpenAI(base_url=f"{reference_server.url}/v1", api_key="none", max_retries=0)
    async with c:
        yield c


def health(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/health", timeout=5).json()  # type: ignore[no-any-return]


# A schema the model cannot finish early: the grammar forces well over a thousand tokens, seconds
# of generation even on a fast machine.
LONG_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "numbers",
        "schema": {"type": "array", "minItems": 700, "items": {"type": "integer"}},
    },
}


def cli_token(port: int, key_file: Path, *args: str) -> str:
    """``python -m reference_app token ARGS``, as a user mints one, for the server on ``port``
    whose issuer key is ``key_file``."""
    env = {**os.environ, "AIMW_AUTH_KEY_FILE": str(key_file)}
    result = subprocess.run(
        [sys.executable, "-m", "reference_app", "token", "--port", str(port), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    return result.stdout.strip()


def documented_fields(heading: str) -> dict[str, str]:
    """Each request field the docs' table under ``heading`` names, with its decision
    (honoured, ignored or refused), as docs/reference_app.md writes them."""
    text = (ROOT / "docs" / "reference_app.md").read_text()
    section = text[text.index(f"## {heading}") :]
    section = section[: section.index("\n## ", 1)]
    documented: dict[str, str] = {}
    for fields, decision in re.findall(r"^\| (`[^|]+) \| (\w+)", section, re.M):
        for name in re.findall(r"`([a-z_]+)`", fields):
            documented[name] = decision
    return documented


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])

    def server_spans(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


@pytest.fixture
def traced() -> Iterator[tuple[Traced, ThreadedServer]]:
    """A reference app recording into in-memory readers; every span is scanned for secrets."""
    spans = Traced()
    telemetry = Telemetry(spans.tracer_provider, spans.meter_provider)
    with ThreadedServer(create_app(Settings(auth=False), telemetry=telemetry)) as server:
        wait_ready(server.url)
        yield spans, server
    assert_no_secrets(spans.exporter.get_finished_spans(), [])
    spans.tracer_provider.shutdown()
    spans.meter_provider.shutdown()
