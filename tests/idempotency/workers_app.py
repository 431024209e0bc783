"""The app ``test_workers`` serves with ``uvicorn --workers 4``: one Redis shared by all.

Each real execution increments a counter in Redis, so the test counts executions across
processes. Configured by the environment: ``AIMW_TEST_REDIS_URL`` and ``AIMW_TEST_PREFIX``.
"""

from __future__ import annotations

import asyncio
import os

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aimiddleware.idempotency import IdempotencyMiddleware

REDIS_URL = os.environ["AIMW_TEST_REDIS_URL"]
PREFIX = os.environ["AIMW_TEST_PREFIX"]


async def endpoint(request: Request) -> JSONResponse:
    payload = await request.json()
    client = Redis.from_url(REDIS_URL)
    try:
        run = await client.incr(f"{PREFIX}executions")
    finally:
        await client.aclose()
    await asyncio.sleep(0.5)  # long enough for every duplicate to arrive while it runs
    return JSONResponse({"run": run, "pid": os.getpid(), "echo": payload})


app = IdempotencyMiddleware(
    Starlette(routes=[Route("/v1/chat/completions", endpoint, methods=["POST"])]),
    store=f"{REDIS_URL}?prefix={PREFIX}",
    anonymous="shared",
)
