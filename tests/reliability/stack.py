"""The reference app with the full stack, auth on, recording everything a secret could leak into.

Spans and metrics go to in-memory readers, every log record of the process to a list; after a
scenario, :meth:`Stack.leaks` scans them (and the store, when it is Redis) for the credentials
that were used.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from reference_app import Settings, create_app
from reference_app.telemetry import Telemetry

from ..reference_app.conftest import UNREACHED_LIMITS, cli_token, wait_ready
from ..servers import ThreadedServer, bound_socket, port_of

MODEL = "SmolLM2-135M-Instruct"


class Records(logging.Handler):
    """Every log record of the process, formatted with its traceback, kept for the scan."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = logging.Formatter().format(record)
        with self.lock_:
            self.lines.append(text)


class Spans(SpanExporter):
    """Every finished span, kept for the scan; ``take`` hands them over and forgets them."""

    def __init__(self) -> None:
        self._spans: list[ReadableSpan] = []
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self._spans.extend(spans)
        return SpanExportResult.SUCCESS

    def get_finished_spans(self) -> tuple[ReadableSpan, ...]:
        with self._lock:
            return tuple(self._spans)

    def take(self) -> list[ReadableSpan]:
        with self._lock:
            spans, self._spans = self._spans, []
        return spans

    def clear(self) -> None:
        self.take()


class Counted:
    """Counts the HTTP requests that reached the server, outside the whole stack."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: dict[str, int] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen[scope["path"]] = self.seen.get(scope["path"], 0) + 1
        await self.app(scope, receive, send)


class Stack:
    def __init__(self, server: ThreadedServer, key_file: Path, records: Records) -> None:
        self.server = server
        self.url = server.url
        self.key_file = key_file
        self.records = records
        self.exporter = Spans()
        self.metrics = InMemoryMetricReader()
        self.secrets: set[str] = set()
        self.found: list[str] = []  # by scan_and_forget
        self.counted: Counted = server.server.config.app

    def token(self, *args: str) -> str:
        """``python -m reference_app token ARGS``, as a user mints one."""
        token = cli_token(self.server.port, self.key_file, *args)
        self.secrets.add(token)
        return token

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=10).json()  # type: ignore[no-any-return]

    def leaks(self, extra: list[str] = []) -> list[str]:  # noqa: B006 (read only)
        """Where any credential used so far appears: logs, span attributes/events, metrics."""
        secrets = [s for s in [*self.secrets, *extra] if s]
        found = [
            *self.found,
            *self._found_in(self.records.lines, self.exporter.get_finished_spans(), secrets),
        ]
        data = self.metrics.get_metrics_data()
        text = data.to_json() if data is not None else ""
        found += ["metrics" for s in secrets if s in text]
        return found

    def scan_and_forget(self) -> None:
        """Scan the logs and spans recorded so far, keep what was found, and drop them: a
        long run then measures the server's memory, not the recording's."""
        with self.records.lock_:
            lines, self.records.lines = self.records.lines, []
        secrets = [s for s in self.secrets if s]
        self.found += self._found_in(lines, self.exporter.take(), secrets)

    @staticmethod
    def _found_in(
        lines: Sequence[str], spans: Sequence[ReadableSpan], secrets: list[str]
    ) -> list[str]:
        found = []
        for line in lines:
            found += [f"log: {line[:80]}" for s in secrets if s in line]
        for span in spans:
            text = repr(dict(span.attributes or {})) + repr(
                [(e.name, dict(e.attributes or {})) for e in span.events]
            )
            found += [f"span {span.name}" for s in secrets if s in text]
        return found


@contextmanager
def serve_stack(tmp: Path, **settings: Any) -> Iterator[Stack]:
    """The reference app, auth on, the given settings (limits unreached unless given)."""
    sock = bound_socket()
    port = port_of(sock)
    key_file = tmp / "issuer-key.json"
    records = Records()
    root = logging.getLogger()
    root.addHandler(records)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    merged = {**UNREACHED_LIMITS, "access_log": True, **settings}
    stack_settings = Settings(port=port, auth=True, auth_key_file=key_file, **merged)
    exporter = Spans()
    metrics = InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[metrics])
    app = Counted(create_app(stack_settings, telemetry=Telemetry(tracer_provider, meter_provider)))
    try:
        with ThreadedServer(app, sock=sock) as server:
            wait_ready(server.url)
            stack = Stack(server, key_file, records)
            stack.exporter, stack.metrics = exporter, metrics
            yield stack
    finally:
        root.removeHandler(records)
        root.setLevel(old_level)
        tracer_provider.shutdown()
        meter_provider.shutdown()


def chat(max_tokens: int = 2, stream: bool = False, content: str = "Hi") -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
