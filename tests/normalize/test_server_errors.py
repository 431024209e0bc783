"""A 5xx says nothing but its status: no part of the app's body reaches the client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aimiddleware.normalize import NormalizeMiddleware, NormalizeRoute

pytestmark = pytest.mark.anyio

SECRET = "postgres://admin:hunter2@db.internal:5432"
GENERIC = "The server had an error while processing your request. Request id: rid-7."


async def call(app: Any, method: str = "GET", path: str = "/", **kwargs: Any) -> httpx.Response:
    headers = {"x-request-id": "rid-7", **kwargs.pop("headers", {})}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://test",
    ) as client:
        return await client.request(method, path, headers=headers, **kwargs)


def answering(status: int, body: Any, **options: Any) -> NormalizeMiddleware:
    async def endpoint(request: Request) -> Response:
        return JSONResponse(body, status_code=status, headers={"Retry-After": "2"})

    route = Route("/x", endpoint, methods=["GET", "POST"])
    return NormalizeMiddleware(Starlette(routes=[route]), **options)


def only_status(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status
    assert SECRET not in response.text
    assert response.json() == {
        "error": {"message": GENERIC, "type": "server_error", "param": None, "code": code}
    }
    assert int(response.headers["content-length"]) == len(response.content)


async def test_a_502_detail_does_not_become_the_message() -> None:
    response = await call(answering(502, {"detail": SECRET}), "GET", "/x")
    only_status(response, 502, "bad_gateway")
    assert response.headers["retry-after"] == "2"  # headers still speak


async def test_a_500_envelope_keeps_none_of_its_fields() -> None:
    body = {"error": {"message": "boom", "type": "db_error", "code": "pg", "debug": SECRET}}
    only_status(await call(answering(500, body), "GET", "/x"), 500, "internal_error")


async def test_a_503_envelope_is_rebuilt_from_its_status() -> None:
    body = {"error": {"message": f"pool exhausted at {SECRET}", "type": "x", "code": "pool"}}
    only_status(await call(answering(503, body), "GET", "/x"), 503, "service_unavailable")


async def test_a_500_json_rpc_error_is_not_passed_through() -> None:
    rpc = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": SECRET}}
    response = await call(answering(500, rpc), "POST", "/x", json={})
    only_status(response, 500, "internal_error")


async def test_problem_details_of_a_5xx_carry_only_the_status() -> None:
    body = {"type": "https://e.example/db", "title": SECRET, "status": 502, "detail": SECRET}
    app = answering(502, body)
    response = await call(app, "GET", "/x", headers={"accept": "application/problem+json"})
    assert response.status_code == 502
    assert SECRET not in response.text
    problem = response.json()
    assert problem["type"] == "about:blank"
    assert problem["title"] == "Bad Gateway"
    assert problem["detail"] == GENERIC
    assert problem["code"] == "bad_gateway"


async def test_an_http_exception_5xx_detail_is_not_shown() -> None:
    async def endpoint(request: Request) -> Response:
        raise HTTPException(504, detail=SECRET)

    app = NormalizeMiddleware(Starlette(routes=[Route("/x", endpoint)]))
    only_status(await call(app, "GET", "/x"), 504, "gateway_timeout")


async def test_a_5xx_event_stream_is_replaced_too() -> None:
    async def events() -> AsyncIterator[bytes]:
        yield f'data: {{"error": {{"message": "{SECRET}"}}}}\n\n'.encode()

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(events(), status_code=500, media_type="text/event-stream")

    app = NormalizeMiddleware(Starlette(routes=[Route("/v1/chat/completions", endpoint)]))
    response = await call(app, "GET", "/v1/chat/completions")
    only_status(response, 500, "internal_error")


async def test_an_exception_mid_stream_ends_it_without_its_text() -> None:
    async def events() -> AsyncIterator[bytes]:
        yield b'data: {"choices": []}\n\n'
        raise HTTPException(502, detail=SECRET)

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(events(), media_type="text/event-stream")

    app = NormalizeMiddleware(Starlette(routes=[Route("/v1/chat/completions", endpoint)]))
    response = await call(app, "GET", "/v1/chat/completions")
    assert response.status_code == 200
    assert SECRET not in response.text
    assert GENERIC in response.text
    assert response.text.endswith("data: [DONE]\n\n")


async def test_passthrough_routes_keep_their_own_5xx_documents() -> None:
    app = answering(503, {"status": "loading"}, routes=[NormalizeRoute("/x", format="passthrough")])
    response = await call(app, "GET", "/x")
    assert response.status_code == 503
    assert response.json() == {"status": "loading"}
