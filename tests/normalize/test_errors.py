from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from aimiddleware import ConfigurationError
from aimiddleware.context import TRACE_ID_KEY, Receive, Scope, Send
from aimiddleware.normalize import NormalizeMiddleware, NormalizeRoute

pytestmark = pytest.mark.anyio

KEYS = {"message", "type", "param", "code"}


async def call(app: Any, method: str = "GET", path: str = "/", **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://test",
    ) as client:
        return await client.request(method, path, **kwargs)


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    payload = response.json()
    assert set(payload) == {"error"}
    assert set(payload["error"]) >= KEYS
    return payload["error"]  # type: ignore[no-any-return]


def starlette(*routes: Route, **options: Any) -> NormalizeMiddleware:
    return NormalizeMiddleware(Starlette(routes=list(routes)), **options)


async def test_starlette_404_gets_the_envelope() -> None:
    response = await call(starlette(), "GET", "/nowhere")
    assert response.status_code == 404
    assert error_of(response) == {
        "message": "Not Found",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }
    assert response.headers["x-request-id"].startswith("req_")


async def test_404_on_an_openai_route_is_an_unknown_model() -> None:
    async def chat(request: Request) -> Response:
        return JSONResponse({"detail": "The model 'gpt-9' does not exist"}, status_code=404)

    app = starlette(Route("/v1/chat/completions", chat, methods=["POST"]))
    error = error_of(await call(app, "POST", "/v1/chat/completions", json={"model": "gpt-9"}))
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert error["message"] == "The model 'gpt-9' does not exist"


async def test_405_keeps_its_allow_header() -> None:
    async def only_get(request: Request) -> Response:
        return PlainTextResponse("ok")

    response = await call(starlette(Route("/thing", only_get)), "DELETE", "/thing")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]


class Chat(BaseModel):
    model: str
    max_tokens: int = 16


def fastapi_app() -> FastAPI:
    api = FastAPI()

    @api.post("/v1/chat/completions")
    async def chat(body: Chat) -> dict[str, Any]:
        return {"ok": True}

    @api.get("/secret")
    async def secret() -> None:
        raise HTTPException(401, "Invalid bearer token", headers={"WWW-Authenticate": "Bearer"})

    return api


async def test_validation_errors_name_the_field() -> None:
    app = NormalizeMiddleware(fastapi_app())
    response = await call(
        app, "POST", "/v1/chat/completions", json={"model": "m", "max_tokens": "x"}
    )
    assert response.status_code == 422
    error = error_of(response)
    assert error["param"] == "max_tokens"
    assert error["code"] == "invalid_type"
    assert error["type"] == "invalid_request_error"
    assert "max_tokens" in error["message"]

    missing = error_of(await call(app, "POST", "/v1/chat/completions", json={}))
    assert missing["param"] == "model"
    assert missing["code"] == "missing_required_parameter"


async def test_401_keeps_its_challenge() -> None:
    response = await call(NormalizeMiddleware(fastapi_app()), "GET", "/secret")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = error_of(response)
    assert error["message"] == "Invalid bearer token"
    assert error["code"] == "invalid_api_key"


def limited(remaining_tokens: str) -> Route:
    async def endpoint(request: Request) -> Response:
        return JSONResponse(
            {"detail": "Slow down"},
            status_code=429,
            headers={
                "Retry-After": "7",
                "RateLimit-Policy": '"tokens";q=1000;w=60',
                "RateLimit": '"tokens";r=0;t=7',
                "x-ratelimit-remaining-tokens": remaining_tokens,
                "x-ratelimit-remaining-requests": "5",
                "Access-Control-Allow-Origin": "https://example.org",
            },
        )

    return Route("/limited", endpoint)


async def test_429_keeps_rate_limit_and_cors_headers() -> None:
    response = await call(starlette(limited("0")), "GET", "/limited")
    assert response.status_code == 429
    for name in (
        "retry-after",
        "ratelimit-policy",
        "ratelimit",
        "x-ratelimit-remaining-tokens",
        "access-control-allow-origin",
    ):
        assert name in response.headers
    error = error_of(response)
    assert error == {
        "message": "Slow down",
        "type": "tokens",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    by_requests = error_of(await call(starlette(limited("900")), "GET", "/limited"))
    assert by_requests["type"] == "requests"


async def test_an_unhandled_exception_is_logged_once_and_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("db password is hunter2")

    caplog.set_level(logging.DEBUG)
    app = starlette(Route("/boom", boom))
    response = await call(app, "GET", "/boom", headers={"x-request-id": "abc-123"})
    assert response.status_code == 500
    error = error_of(response)
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert error["type"] == "server_error"
    assert error["code"] == "internal_error"
    assert "abc-123" in error["message"]
    assert response.headers["x-request-id"] == "abc-123"
    records = [r for r in caplog.records if r.exc_info]
    assert len(records) == 1
    assert "abc-123" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is RuntimeError


async def test_an_invalid_caller_request_id_is_replaced() -> None:
    response = await call(starlette(), "GET", "/x", headers={"x-request-id": "bad id with spaces"})
    assert response.headers["x-request-id"].startswith("req_")


async def test_the_trace_id_goes_into_error_bodies() -> None:
    inner = starlette()

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        scope[TRACE_ID_KEY] = "0af7651916cd43dd8448eb211c80319c"
        await inner(scope, receive, send)

    error = error_of(await call(traced, "GET", "/missing"))
    assert error["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert "trace_id" not in error_of(await call(inner, "GET", "/missing"))


async def test_an_existing_envelope_keeps_its_type_code_and_extra_keys() -> None:
    async def conflict(request: Request) -> Response:
        body = {"error": {"message": "Key in use", "code": "idempotency_key_in_use", "key": "k1"}}
        return JSONResponse(body, status_code=409)

    error = error_of(await call(starlette(Route("/c", conflict)), "GET", "/c"))
    assert error == {
        "message": "Key in use",
        "type": "invalid_request_error",
        "param": None,
        "code": "idempotency_key_in_use",
        "key": "k1",
    }


async def test_problem_json_when_accept_asks_or_the_route_says() -> None:
    app = starlette(
        routes=[NormalizeRoute("/admin*", format="problem")],
        problem_type_base="https://errors.example.org/",
    )
    asked = await call(app, "GET", "/missing", headers={"accept": "application/problem+json"})
    assert asked.headers["content-type"] == "application/problem+json"
    problem = asked.json()
    assert problem["type"] == "https://errors.example.org/not_found"
    assert problem["title"] == "Not Found"
    assert problem["status"] == 404
    assert problem["detail"] == "Not Found"
    assert problem["request_id"] == asked.headers["x-request-id"]
    assert int(asked.headers["content-length"]) == len(asked.content)

    by_route = await call(app, "GET", "/admin/users")
    assert by_route.headers["content-type"] == "application/problem+json"
    plain = await call(app, "GET", "/missing", headers={"accept": "application/json"})
    assert plain.headers["content-type"] == "application/json"


async def test_json_rpc_bodies_and_passthrough_routes_are_left_alone() -> None:
    rpc = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32600, "message": "Invalid Request"}}

    async def mcp(request: Request) -> Response:
        return JSONResponse(rpc, status_code=400)

    async def raw(request: Request) -> Response:
        return PlainTextResponse("teapot", status_code=418)

    app = starlette(
        Route("/mcp", mcp, methods=["POST"]),
        Route("/raw", raw),
        routes=[NormalizeRoute("/raw", format="passthrough")],
    )
    response = await call(app, "POST", "/mcp", json={})
    assert response.status_code == 400
    assert response.json() == rpc
    passthrough = await call(app, "GET", "/raw")
    assert passthrough.text == "teapot"


def completion_route() -> Route:
    async def chat(request: Request) -> Response:
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hi"},
                        "logprobs": None,
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        )

    return Route("/v1/chat/completions", chat, methods=["POST"])


async def test_prefer_return_minimal_trims_declared_routes() -> None:
    route = NormalizeRoute(
        "/v1/chat/completions", minimal=["id", "choices.message.content", "usage.total_tokens"]
    )
    app = starlette(completion_route(), routes=[route])
    minimal = await call(app, "POST", "/v1/chat/completions", headers={"prefer": "return=minimal"})
    assert minimal.json() == {
        "id": "chatcmpl-1",
        "choices": [{"message": {"content": "Hi"}}],
        "usage": {"total_tokens": 4},
    }
    assert int(minimal.headers["content-length"]) == len(minimal.content)
    assert minimal.headers["preference-applied"] == "return=minimal"
    assert minimal.headers["vary"] == "Prefer"
    full = await call(app, "POST", "/v1/chat/completions")
    assert full.json()["object"] == "chat.completion"
    assert "preference-applied" not in full.headers
    assert full.headers["vary"] == "Prefer"


async def test_minimal_can_be_a_function() -> None:
    def content_only(body: Any) -> Any:
        return {"content": body["choices"][0]["message"]["content"]}

    app = starlette(
        completion_route(),
        routes=[NormalizeRoute("/v1/chat/completions", minimal=content_only)],
    )
    response = await call(
        app, "POST", "/v1/chat/completions", headers={"prefer": "respond-async, return=minimal"}
    )
    assert response.json() == {"content": "Hi"}


async def test_a_compressed_error_body_is_replaced_not_corrupted() -> None:
    async def gone(request: Request) -> Response:
        return JSONResponse({"detail": "x" * 2000}, status_code=410)

    app = NormalizeMiddleware(
        GZipMiddleware(Starlette(routes=[Route("/g", gone)]), minimum_size=10)
    )
    response = await call(app, "GET", "/g", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert error_of(response) == {
        "message": "Gone",
        "type": "invalid_request_error",
        "param": None,
        "code": "gone",
    }


async def test_head_requests_get_headers_only() -> None:
    response = await call(starlette(), "HEAD", "/missing")
    assert response.status_code == 404
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


async def test_an_app_that_never_answers_gets_a_500() -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    response = await call(NormalizeMiddleware(silent), "GET", "/")
    assert response.status_code == 500
    assert error_of(response)["code"] == "internal_error"


async def test_success_responses_pass_through() -> None:
    async def ok(request: Request) -> Response:
        return JSONResponse({"fine": True}, headers={"x-request-id": "from-app"})

    response = await call(starlette(Route("/ok", ok)), "GET", "/ok")
    assert response.json() == {"fine": True}
    assert response.headers["x-request-id"] == "from-app"


def test_bad_options_raise_configuration_error() -> None:
    app = Starlette()
    for bad in (
        {"routes": ["/v1"]},
        {"routes": NormalizeRoute("/v1")},
        {"problem_type_base": 3},
        {"max_body": 10},
    ):
        with pytest.raises(ConfigurationError):
            NormalizeMiddleware(app, **bad)
    for route in ({"path": "v1"}, {"path": "/v1", "format": "xml"}, {"path": "/", "minimal": "id"}):
        with pytest.raises(ConfigurationError):
            NormalizeRoute(**route)
    assert "max_body=1048576" in repr(NormalizeMiddleware(app))


async def test_a_problem_body_becomes_an_envelope_with_its_slug_as_code() -> None:
    problem = {
        "type": "https://example.org/problems#idempotency-key-reused",
        "title": "Idempotency-Key is already used",
        "status": 422,
        "detail": "The key was used with another payload.",
    }

    async def reused(request: Request) -> Response:
        return JSONResponse(problem, 422, media_type="application/problem+json")

    app = starlette(Route("/r", reused))
    error = error_of(await call(app, "GET", "/r"))
    assert error["message"] == "The key was used with another payload."
    assert error["code"] == "idempotency-key-reused"
    asked = await call(app, "GET", "/r", headers={"accept": "application/problem+json"})
    assert asked.json()["type"] == problem["type"]  # the author's type URI is kept
    assert asked.json()["detail"] == problem["detail"]
