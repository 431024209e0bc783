"""The reference app behind NormalizeMiddleware, driven by the openai SDK over a real socket.

Every status the SDK maps to an exception class comes back in the one envelope, with message,
type and code parsed. Statuses the real stack produces come from it (401 and 403 from the OAuth
middleware of a server with auth on, 409 and 422 from the idempotency middleware, 400, 404 and 503
from the app), the others from test routes added to this server's FastAPI app.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

from reference_app import Settings, create_app

from ..servers import ThreadedServer, bound_socket, port_of
from .conftest import LONG_SCHEMA, MODEL, wait_ready
from .test_oauth_e2e import Demo

pytestmark = [pytest.mark.model, pytest.mark.e2e]


def fastapi_of(stack: Any) -> FastAPI:
    app = stack
    while not isinstance(app, FastAPI):
        app = app.app
    return app


def add_test_routes(api: FastAPI) -> None:
    @api.post("/v1/test/401")
    async def unauthorized() -> None:
        raise HTTPException(
            401,
            "Invalid API key provided.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    @api.post("/v1/test/403")
    async def forbidden() -> None:
        raise HTTPException(403, "The token lacks the scope chat:write.")

    @api.post("/v1/test/413")
    async def too_large() -> None:
        raise HTTPException(413, "The request body exceeds 1048576 bytes.")

    @api.post("/v1/test/429")
    async def limited() -> JSONResponse:
        headers = {
            "Retry-After": "12",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-remaining-requests": "59",
            "RateLimit": '"tokens";r=0;t=12',
        }
        return JSONResponse({"detail": "Rate limit reached for tokens per min."}, 429, headers)

    @api.post("/v1/test/500")
    async def crash() -> None:
        raise RuntimeError("connection string postgres://admin:s3cret@db")


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    # one instance and no line, so a second generation is a real 503
    stack = create_app(Settings(instances=1, max_queue=0, auth=False))
    add_test_routes(fastapi_of(stack))
    with ThreadedServer(stack) as running:
        wait_ready(running.url)
        yield running


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    sock = bound_socket()
    key_file = tmp_path_factory.mktemp("issuer") / "issuer-key.json"
    settings = Settings(port=port_of(sock), auth=True, auth_key_file=key_file)
    with ThreadedServer(create_app(settings), sock=sock) as running:
        wait_ready(running.url)
        yield Demo(running, key_file)


@pytest.mark.parametrize("status", [401, 403])
def test_oauth_errors_reach_the_sdk_in_the_envelope_with_their_challenge(
    secured: Demo, status: int
) -> None:
    token = "unused" if status == 401 else secured.token("--scope", "models:read")
    cls = openai.AuthenticationError if status == 401 else openai.PermissionDeniedError
    headers = {"Authorization": openai.omit} if status == 401 else {}
    with secured.sdk(token) as client, pytest.raises(cls) as raised:
        client.chat.completions.create(**hi(), extra_headers=headers)
    error = raised.value
    assert error.status_code == status
    assert isinstance(error.body, dict)
    assert set(error.body) >= {"message", "type", "param", "code"}
    assert error.message == f"Error code: {status} - {error.body['message']}"
    assert error.type == ("invalid_request_error" if status == 401 else "permission_error")
    assert error.code == ("invalid_api_key" if status == 401 else "insufficient_scope")
    assert error.request_id is not None
    assert error.response.headers["www-authenticate"].startswith("Bearer ")
    assert int(error.response.headers["content-length"]) == len(error.response.content)


@pytest.fixture
def sdk(server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0) as client:
        yield client


def hi(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 4,
        **extra,
    }


CASES = [
    # status, how, exception class, message, type, code
    (
        400,
        "bias",
        openai.BadRequestError,
        "logit_bias values must be between -100 and 100.",
        "invalid_request_error",
        None,
    ),
    (
        401,
        "/test/401",
        openai.AuthenticationError,
        "Invalid API key provided.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    (
        403,
        "/test/403",
        openai.PermissionDeniedError,
        "The token lacks the scope chat:write.",
        "invalid_request_error",  # the app wrote its own envelope: its type wins
        "insufficient_permissions",
    ),
    (
        404,
        "model",
        openai.NotFoundError,
        "The model `gpt-9` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    (
        409,
        "key in flight",
        openai.ConflictError,
        "A request with the same Idempotency-Key for the same operation is being processed "
        "or is outstanding.",
        "invalid_request_error",
        "idempotency-key-in-flight",
    ),
    (
        413,
        "/test/413",
        openai.APIStatusError,
        "The request body exceeds 1048576 bytes.",
        "invalid_request_error",
        "request_too_large",
    ),
    (
        422,
        "key reused",
        openai.UnprocessableEntityError,
        "This operation is idempotent and it requires correct usage of Idempotency Key. "
        "Idempotency Key MUST not be reused across different payloads of this operation.",
        "invalid_request_error",
        "idempotency-key-reused",
    ),
    (
        429,
        "/test/429",
        openai.RateLimitError,
        "Rate limit reached for tokens per min.",
        "tokens",
        "rate_limit_exceeded",
    ),
    (500, "/test/500", openai.InternalServerError, None, "server_error", "internal_error"),
    (503, "busy", openai.InternalServerError, None, "server_error", "service_unavailable"),
]


def provoke(sdk: openai.OpenAI, server: ThreadedServer, how: str) -> None:
    if how == "bias":
        sdk.chat.completions.create(**hi(logit_bias={"1": 500}))
    elif how == "model":
        sdk.chat.completions.create(**hi(model="gpt-9"))
    elif how in ("busy", "key in flight"):
        # with a key, the idempotency middleware finishes the generation after a hang-up (for
        # the replay): keep that one short, the next test needs the only instance
        tokens = 1900 if how == "busy" else 80
        long_chat = hi(response_format=LONG_SCHEMA, max_tokens=tokens, stream=True)
        key = {"Idempotency-Key": f"in-flight-{uuid.uuid4()}"}
        with httpx.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            json=long_chat,
            # the SDK's credential too: keys are scoped per caller
            headers={**key, "Authorization": "Bearer k"} if how == "key in flight" else {},
            timeout=30,
        ) as r:
            lines = r.iter_lines()
            next(lines)  # the only instance is generating now
            if how == "busy":
                sdk.chat.completions.create(**hi())
            else:  # the same request again, while the first still runs
                sdk.chat.completions.create(**long_chat, extra_headers=key)

    elif how == "key reused":
        key = {"Idempotency-Key": f"reused-{uuid.uuid4()}"}
        sdk.chat.completions.create(**hi(), extra_headers=key)
        sdk.chat.completions.create(**hi(max_tokens=5), extra_headers=key)
    else:
        sdk.post(how, body={}, cast_to=object)


def wait_idle(server: ThreadedServer) -> None:
    """Until the hung-up generation has freed the only instance (the next test needs it)."""
    stats = fastapi_of(server.server.config.app).state.engine.stats
    deadline = time.monotonic() + 30
    while stats.generations_active and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("status", "how", "cls", "message", "kind", "code"), CASES, ids=[str(c[0]) for c in CASES]
)
def test_the_sdk_raises_the_matching_class_with_the_envelope_parsed(
    sdk: openai.OpenAI,
    server: ThreadedServer,
    status: int,
    how: str,
    cls: type[openai.APIStatusError],
    message: str | None,
    kind: str,
    code: str | None,
) -> None:
    try:
        with pytest.raises(cls) as raised:
            provoke(sdk, server, how)
    finally:
        wait_idle(server)
    error = raised.value
    assert error.status_code == status
    assert error.type == kind
    assert error.code == code
    assert isinstance(error.body, dict)
    assert {"message", "type", "param", "code"} <= set(error.body)
    assert error.request_id is not None
    if message is not None:
        assert error.message == f"Error code: {status} - {message}"
        assert error.body["message"] == message
    if status == 500:
        assert "s3cret" not in str(error.body)
        assert error.request_id in error.body["message"]
    if status == 401:
        assert error.response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    if status == 429:
        assert error.response.headers["retry-after"] == "12"
        # the route's own field survives normalisation; the stack's rate limiter appends its own
        assert error.response.headers["ratelimit"].split(", ")[0] == '"tokens";r=0;t=12'
    if status == 503:
        assert error.response.headers["retry-after"] == "1"


def test_an_injected_failure_after_the_third_chunk_raises_api_error(
    sdk: openai.OpenAI, server: ThreadedServer
) -> None:
    engine = fastapi_of(server.server.config.app).state.engine
    original = engine.generate
    produced: list[int] = []

    async def failing(*args: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        async for item in original(*args, **kwargs):
            if len(produced) == 3:
                raise RuntimeError("injected: the accelerator fell off the bus")
            produced.append(1)
            yield item

    engine.generate = failing
    received: list[Any] = []
    try:
        stream = sdk.chat.completions.create(
            **hi(
                max_tokens=64,
                messages=[{"role": "user", "content": "Tell me about bees."}],
                stream=True,
            )
        )
        with pytest.raises(openai.APIError) as raised:
            received.extend(stream)
    finally:
        del engine.generate
    assert len(produced) == 3
    assert 1 <= len(received) <= 4  # the role chunk, then at most the three tokens
    error = raised.value
    assert not isinstance(error, openai.APIStatusError)
    assert error.type == "server_error"
    assert error.code == "internal_error"
    assert "accelerator" not in error.message


def test_prefer_return_minimal_trims_a_real_completion(server: ThreadedServer) -> None:
    url = f"{server.url}/v1/chat/completions"
    full = httpx.post(url, json=hi(), timeout=30)
    minimal = httpx.post(url, json=hi(), headers={"Prefer": "return=minimal"}, timeout=30)
    assert full.status_code == minimal.status_code == 200
    assert "system_fingerprint" in full.json()
    body = minimal.json()
    assert set(body) == {"id", "model", "choices", "usage"}
    assert set(body["choices"][0]) == {"message", "finish_reason"}
    assert set(body["choices"][0]["message"]) == {"content"}
    assert minimal.headers["preference-applied"] == "return=minimal"
    assert len(minimal.content) < len(full.content)


def test_the_callers_request_id_comes_back(server: ThreadedServer) -> None:
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        json=hi(model="nope"),
        headers={"x-request-id": "agent-42"},
        timeout=30,
    )
    assert r.status_code == 404
    assert r.headers["x-request-id"] == "agent-42"


def test_error_bodies_carry_the_trace_id_of_the_requests_span() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from reference_app.telemetry import Telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stack = create_app(Settings(auth=False), telemetry=Telemetry(tracer_provider=provider))
    add_test_routes(fastapi_of(stack))
    try:
        with ThreadedServer(stack) as running:
            wait_ready(running.url)
            missing = httpx.post(f"{running.url}/v1/chat/completions", json=hi(model="nope"))
            crash = httpx.post(f"{running.url}/v1/test/500", json={})
    finally:
        provider.shutdown()
    finished = exporter.get_finished_spans()
    traces = {format(span.context.trace_id, "032x"): span for span in finished}
    assert missing.json()["error"]["trace_id"] in traces
    crash_error = crash.json()["error"]
    assert crash_error["trace_id"] in traces
    crash_span = traces[crash_error["trace_id"]]
    assert crash_span.attributes["aimiddleware.normalize.exception"] == "RuntimeError"
    assert crash_span.attributes["http.response.status_code"] == 500
