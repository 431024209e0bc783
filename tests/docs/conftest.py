from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from ..reference_app.conftest import serve_reference
from ..servers import ThreadedServer, bound_socket, port_of


@pytest.fixture(scope="session")
def docs_socket() -> Iterator[socket.socket]:
    """The docs server's socket, bound for the session: its port is known before it serves."""
    with bound_socket() as sock:
        yield sock


@pytest.fixture(scope="session")
def docs_settings(
    tmp_path_factory: pytest.TempPathFactory, docs_socket: socket.socket
) -> dict[str, Any]:
    """The demo server's settings as `make demo` has them: auth on, its own issuer key."""
    key_file = tmp_path_factory.mktemp("issuer") / "issuer-key.json"
    return {"port": port_of(docs_socket), "auth": True, "auth_key_file": key_file}


@pytest.fixture(scope="session")
def docs_server(
    docs_settings: dict[str, Any], docs_socket: socket.socket
) -> Iterator[ThreadedServer]:
    """The reference app the examples talk to where they address the demo server."""
    with serve_reference(sock=docs_socket, **docs_settings) as server:
        yield server


@pytest.fixture(scope="session")
def docs_api_key(docs_settings: dict[str, Any]) -> str:
    """What the README has readers export as OPENAI_API_KEY: a token the docs server trusts."""
    from reference_app import Settings
    from reference_app.auth import mint

    return mint(Settings(**docs_settings), scope="chat models:read embeddings mcp")


class Collector:
    """An OTLP/HTTP collector on loopback that keeps the trace export requests it receives."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        self.received: list[bytes] = []

        async def traces(request: Request) -> Response:
            self.received.append(await request.body())
            return Response(b"", media_type="application/x-protobuf")

        self.server = ThreadedServer(
            Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
        )

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def otlp_collector() -> Iterator[Collector]:
    collector = Collector()
    with collector.server:
        yield collector
