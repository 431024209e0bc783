"""Tracing of /mcp in the reference app: the span of a tool call names the tool, the refusal
its reason, and the token appears nowhere (real model, OAuth on, the official mcp client)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from reference_app import Settings, create_app
from reference_app.auth import mint
from reference_app.telemetry import Telemetry

from ..live import wait_for
from ..reference_app.conftest import wait_ready
from ..servers import ThreadedServer, bound_socket, port_of

pytestmark = [pytest.mark.anyio, pytest.mark.model, pytest.mark.e2e]


class Recorded:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def mcp_spans(self) -> list[ReadableSpan]:
        return [
            s
            for s in self.exporter.get_finished_spans()
            if s.kind is SpanKind.SERVER and (s.attributes or {}).get("url.path") == "/mcp"
        ]


@pytest.fixture
def traced(tmp_path: Any) -> Iterator[tuple[Recorded, Settings, str]]:
    recorded = Recorded()
    sock = bound_socket()
    settings = Settings(port=port_of(sock), auth=True, auth_key_file=tmp_path / "key.json")
    telemetry = Telemetry(recorded.tracer_provider, recorded.meter_provider)
    with ThreadedServer(create_app(settings, telemetry=telemetry), sock=sock) as server:
        wait_ready(server.url)
        yield recorded, settings, server.url
    recorded.tracer_provider.shutdown()
    recorded.meter_provider.shutdown()


async def test_a_tool_call_span_names_the_tool_and_a_refusal_its_reason(
    traced: tuple[Recorded, Settings, str],
) -> None:
    recorded, settings, url = traced
    token = mint(settings, scope="mcp chat", client_id="agent-7")
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        reply = await client.call_tool(
            "chat", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        )
        assert not reply.is_error
        with pytest.raises(MCPError):
            await client.call_tool("list_models", {})

    def by_tool(tool: str) -> list[dict[str, Any]]:
        return [
            dict(s.attributes or {})
            for s in recorded.mcp_spans()
            if (s.attributes or {}).get("aimiddleware.mcp.tool") == tool
        ]

    wait_for(lambda: by_tool("chat") and by_tool("list_models"))
    (chat,) = by_tool("chat")
    assert chat["aimiddleware.mcp.method"] == "tools/call"
    assert chat["aimiddleware.mcp.outcome"] == "allowed"
    assert chat["http.response.status_code"] == 200
    (refused,) = by_tool("list_models")
    assert refused["aimiddleware.mcp.outcome"] == "insufficient_scope"
    assert refused["http.response.status_code"] == 403
    for span in recorded.exporter.get_finished_spans():
        for key, value in (span.attributes or {}).items():
            assert token not in f"{key}={value}"
