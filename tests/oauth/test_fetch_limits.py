"""JWKS, metadata and introspection fetches: one deadline for the whole answer, a byte cap
enforced while the body streams in. Each test points the middleware at a real loopback server
that trickles its answer byte by byte or sends a huge one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aimiddleware.oauth import Introspection, OAuthMiddleware

from .apps import bearer, client_for, middleware
from .issuer import INTROSPECTION_CLIENT, Issuer

pytestmark = pytest.mark.anyio

HUGE = 48 << 20


class BadServer:
    """An HTTP/1.1 server on a port bound at 0 that answers every request badly."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.sent = 0  # body bytes handed to the socket
        self.connections: list[asyncio.Task[Any]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.append(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            if self.how == "slow":
                await self._trickle(writer)
            else:
                await self._flood(writer, declared=self.how == "huge-declared")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: what these tests want
        finally:
            writer.close()

    async def hung_up(self) -> None:
        """Until every connection ended: the client hung up on each of them."""
        async with asyncio.timeout(30):
            await asyncio.gather(*self.connections)

    async def _trickle(self, writer: asyncio.StreamWriter) -> None:
        # a valid JSON document, one whitespace byte every 0.2 s: each read is quick, the whole
        # answer never comes (or only after a minute)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: 400\r\n\r\n{")  # fmt: skip
        for _ in range(300):
            writer.write(b" ")
            await writer.drain()
            self.sent += 1
            await asyncio.sleep(0.2)

    async def _flood(self, writer: asyncio.StreamWriter, *, declared: bool) -> None:
        length = f"content-length: {HUGE}\r\n" if declared else "connection: close\r\n"
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{length}\r\n"
        writer.write(head.encode())
        chunk = b" " * (64 << 10)
        while self.sent < HUGE:
            writer.write(chunk)
            await writer.drain()
            self.sent += len(chunk)


@contextlib.asynccontextmanager
async def bad_server(how: str) -> AsyncIterator[tuple[str, BadServer]]:
    state = BadServer(how)
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", state
    finally:
        server.close()


def protected(kind: str, issuer: Issuer, url: str) -> tuple[OAuthMiddleware, str]:
    """The middleware whose ``kind`` of fetch goes to ``url``, and a token that needs it."""
    client_id, secret = INTROSPECTION_CLIENT
    if kind == "jwks":
        return middleware(issuer, jwks_uri=url + "/jwks", http_timeout=1.0), issuer.mint()
    if kind == "metadata":
        # the issuer is the bad server: the introspection endpoint is looked up in its metadata
        ask = Introspection(client_id=client_id, client_secret=secret)
        return middleware(None, issuer=url, introspection=ask, http_timeout=1.0), "opaque"
    ask = Introspection(client_id=client_id, client_secret=secret, endpoint=url, timeout=1.0)
    return middleware(issuer, introspection=ask), "opaque"


async def ask(mw: OAuthMiddleware, token: str) -> Any:
    async with client_for(mw) as client:
        # far above the 1 s deadline: without one the request would hang for a minute
        async with asyncio.timeout(20):
            return await client.post("/v1/chat/completions", headers=bearer(token), json={})


@pytest.mark.parametrize("kind", ["jwks", "metadata", "introspection"])
async def test_a_trickling_server_cannot_hold_authentication_past_the_deadline(
    issuer: Issuer, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with bad_server("slow") as (url, server):
        response = await ask(*protected(kind, issuer, url))
        await server.hung_up()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "auth_unavailable"
    assert "within 1 s" in caplog.text


@pytest.mark.parametrize("kind", ["jwks", "metadata", "introspection"])
@pytest.mark.parametrize("how", ["huge", "huge-declared"])
async def test_a_huge_answer_is_cut_off_not_read_whole(
    issuer: Issuer, kind: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with bad_server(how) as (url, server):
        response = await ask(*protected(kind, issuer, url))
        await server.hung_up()
    assert response.status_code == 503
    assert "larger than" in caplog.text
    # the cap is 1 MiB at most; what is left is what the loopback socket buffers took
    assert server.sent < 16 << 20
