"""Over a real socket: uvicorn on loopback, a client that leaves mid-stream, then retries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.stores import Store

from ..servers import LOOPBACK, bound_socket, port_of
from .helpers import BODY, PATH, Counter, chat_app, sse_chunks

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    with bound_socket() as sock:
        port = port_of(sock)
        config = uvicorn.Config(
            app, host=LOOPBACK, port=port, log_level="warning", lifespan="off", ws="none"
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            for _ in range(1000):  # up to 10 s
                if server.started or task.done():
                    break
                await asyncio.sleep(0.01)
            if not server.started:
                raise RuntimeError(f"uvicorn did not start on {LOOPBACK}:{port}")
            yield f"http://{LOOPBACK}:{port}{PATH}"
        finally:
            server.should_exit = True
            await task


async def test_disconnect_mid_stream_then_retry_gets_the_complete_answer(store: Store) -> None:
    counter = Counter()
    app = IdempotencyMiddleware(
        chat_app(counter, chunks=20, chunk_delay=0.02), store=store, anonymous="shared"
    )
    body = {**BODY, "stream": True}
    headers = {"Idempotency-Key": "socket-1"}
    async with serving(app) as url, httpx.AsyncClient(timeout=10) as client:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            assert response.status_code == 200
            async for _ in response.aiter_raw():
                break  # the client leaves after its first chunk
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            retry = await client.post(url, json=body, headers=headers)
            if retry.status_code != 409 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
    assert retry.status_code == 200
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == b"".join(sse_chunks(20))
    assert counter.runs == 1
