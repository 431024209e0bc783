"""Errors the library writes itself (``errors.send_error``): in the route's shape, and kept."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aimiddleware import ConfigurationError, context
from aimiddleware.context import Message, Receive, Scope, Send
from aimiddleware.errors import ErrorInfo, send_error
from aimiddleware.normalize import NormalizeMiddleware, NormalizeOptions, NormalizeRoute

pytestmark = pytest.mark.anyio

BASE = "https://errors.example.com/"


async def call(app: Any, path: str = "/v1/x", **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://test",
    ) as client:
        return await client.get(path, headers={"x-request-id": "rid-9", **headers})


def refusing(info: ErrorInfo, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    """An inner middleware that refuses every request the way the library's middlewares do."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send_error(send, scope, info, headers or [])

    return app


def spied(app: Any, seen: list[Message]) -> Any:
    """``app``, with what it sends recorded before anything outside it sees it."""

    async def spy(scope: Scope, receive: Receive, send: Send) -> None:
        async def record(message: Message) -> None:
            seen.append(message)
            await send(message)

        await app(scope, receive, record)

    return spy


async def test_an_inner_refusal_on_a_problem_route_is_written_as_problem_details() -> None:
    seen: list[Message] = []
    inner = refusing(ErrorInfo(429, "Slow down.", "requests", code="rate_limit_exceeded"))
    app = NormalizeMiddleware(
        spied(inner, seen),
        routes=[NormalizeRoute("/v1/*", format="problem")],
        problem_type_base=BASE,
    )
    response = await call(app)
    # the inner middleware itself wrote problem details, in the route's shape and type base
    inner_headers = dict(seen[0]["headers"])
    assert inner_headers[b"content-type"] == b"application/problem+json"
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == BASE + "rate_limit_exceeded"
    assert (problem["detail"], problem["code"], problem["error_type"]) == (
        "Slow down.",
        "rate_limit_exceeded",
        "requests",
    )
    assert problem["request_id"] == "rid-9"


async def test_an_inner_refusal_keeps_a_code_that_problem_details_alone_would_lose() -> None:
    # without a type base the problem's type is about:blank: read back from the body, the code
    # would fall back to the status's; the recorded error keeps it
    info = ErrorInfo(409, "The key is in use.", code="idempotency_key_in_use")
    app = NormalizeMiddleware(refusing(info), routes=[NormalizeRoute("/v1/*", format="problem")])
    problem = (await call(app)).json()
    assert (problem["type"], problem["code"]) == ("about:blank", "idempotency_key_in_use")


async def test_an_error_already_in_the_requests_shape_goes_out_as_written() -> None:
    info = ErrorInfo(429, "Slow down.", "requests", code="rate_limit_exceeded", title="Slow")

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        # its own type base and title: what normalize would not know to write
        await send_error(send, scope, info, type_base="https://limits.example/")

    app = NormalizeMiddleware(
        inner, routes=[NormalizeRoute("/v1/*", format="problem")], problem_type_base=BASE
    )
    problem = (await call(app)).json()
    assert problem["type"] == "https://limits.example/rate_limit_exceeded"
    assert problem["title"] == "Slow"


async def test_an_error_in_another_shape_is_written_again_in_the_requests() -> None:
    # the idempotency draft's problems are always problem details; the stack's shape wins
    info = ErrorInfo(
        422,
        "The key was used with another payload.",
        code="idempotency_key_reused",
        problem_type="https://example.org/problems#idempotency-key-reused",
    )

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send_error(send, scope, info, [(b"retry-after", b"3")], format="problem")

    response = await call(NormalizeMiddleware(inner))
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"] == {
        "message": "The key was used with another payload.",
        "type": "invalid_request_error",
        "param": None,
        "code": "idempotency_key_reused",
    }
    asked = (await call(NormalizeMiddleware(inner), accept="application/problem+json")).json()
    assert asked["type"] == "https://example.org/problems#idempotency-key-reused"


async def test_openai_routes_leave_the_shape_to_accept() -> None:
    seen: list[Message] = []
    inner = refusing(ErrorInfo(413, "Too large."))
    app = NormalizeMiddleware(spied(inner, seen), routes=[NormalizeRoute("/v1/*")])
    response = await call(app)
    assert dict(seen[0]["headers"])[b"content-type"] == b"application/json"
    assert response.json()["error"]["code"] == "request_too_large"
    asked = await call(app, accept="application/problem+json")
    assert asked.headers["content-type"] == "application/problem+json"


async def test_the_librarys_own_5xx_keeps_its_code_and_message() -> None:
    message = "The rate limiter is unavailable; please try again shortly."
    info = ErrorInfo(503, message, code="rate_limiter_unavailable")
    app = NormalizeMiddleware(refusing(info, [(b"retry-after", b"1")]))
    response = await call(app)
    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "message": message,
            "type": "server_error",
            "param": None,
            "code": "rate_limiter_unavailable",
        }
    }
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-request-id"] == "rid-9"
    assert int(response.headers["content-length"]) == len(response.content)


async def test_a_recorded_error_of_another_status_does_not_speak_for_the_response() -> None:
    secret = "postgres://admin:hunter2@db"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # the library refused something earlier, then the response sent is the app's own 500
        scope[context.ERROR_KEY] = ErrorInfo(503, "kept?", code="rate_limiter_unavailable")
        body = b'{"error": {"message": "' + secret.encode() + b'"}}'
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    response = await call(NormalizeMiddleware(app))
    assert response.status_code == 500
    assert secret not in response.text
    assert response.json()["error"]["code"] == "internal_error"


def test_options_can_be_one_object() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    routes = [NormalizeRoute("/mcp*", format="passthrough")]
    config = NormalizeOptions(routes=routes, max_body=4096)
    middleware = NormalizeMiddleware(app, config=config)
    assert middleware.config is config
    assert config.routes == tuple(routes)
    assert NormalizeMiddleware(app, routes=routes, max_body=4096).config == config
    with pytest.raises(ConfigurationError):
        NormalizeMiddleware(app, config=config, max_body=4096)
