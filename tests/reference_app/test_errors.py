"""The app's own error answers: the library's renderer, in the exact shape OpenAI clients read.

These run the app's exception handlers on a bare FastAPI app (no model, no middleware), which is
also what the in-process ``/mcp`` tools call.
"""

from __future__ import annotations

import json
import pathlib
import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from aimiddleware.context import TRACE_ID_KEY, Receive, Scope, Send
from reference_app import errors
from reference_app.engine import QueueFull
from reference_app.errors import APIError
from reference_app.schemas import EmbeddingRequest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def client(trace_id: str | None = None) -> TestClient:
    app = FastAPI()
    errors.install(app)

    @app.get("/loading")
    async def loading() -> None:
        raise errors.model_loading()

    @app.get("/overloaded")
    async def overloaded() -> None:
        raise errors.overloaded(QueueFull("3 requests are already waiting"))

    @app.get("/model")
    async def model() -> None:
        raise APIError(404, "No such model.", param="model", code="model_not_found")

    @app.post("/embeddings")
    async def embeddings(body: EmbeddingRequest) -> None:
        return None

    @app.get("/surrogate")
    async def surrogate() -> None:
        "\ud800".encode()

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        # what TracingMiddleware does outside the app in the stack
        if trace_id is not None:
            scope[TRACE_ID_KEY] = trace_id
        await app(scope, receive, send)

    return TestClient(traced)


def envelope(message: str, type_: str, param: str | None, code: str | None) -> bytes:
    error = {"message": message, "type": type_, "param": param, "code": code}
    return json.dumps({"error": error}, separators=(",", ":")).encode()


def test_a_5xx_keeps_its_type_code_and_retry_after() -> None:
    with client() as http:
        loading = http.get("/loading")
        overloaded = http.get("/overloaded")
    assert loading.status_code == 503
    assert loading.headers["retry-after"] == "1"
    assert loading.headers["content-type"] == "application/json"
    assert loading.content == envelope(
        "the model is still loading", "server_error", None, "model_loading"
    )
    assert overloaded.status_code == 503
    assert overloaded.headers["retry-after"] == "1"
    assert overloaded.json()["error"]["code"] == "server_overloaded"
    assert "3 requests are already waiting" in overloaded.json()["error"]["message"]


def test_a_4xx_names_its_param_and_code() -> None:
    with client() as http:
        response = http.get("/model")
    assert response.status_code == 404
    assert response.content == envelope(
        "No such model.", "invalid_request_error", "model", "model_not_found"
    )


def test_framework_errors_are_in_the_envelope() -> None:
    with client() as http:
        invalid_json = http.post(
            "/embeddings", content=b"{bad", headers={"content-type": "application/json"}
        )
        wrong_type = http.post("/embeddings", json={"model": 3, "input": "x"})
        unknown = http.get("/nope")
        method = http.post("/model")
        surrogate = http.get("/surrogate")
    assert invalid_json.status_code == 400
    assert invalid_json.content == envelope(
        "the request body is not valid JSON", "invalid_request_error", None, None
    )
    assert wrong_type.status_code == 400
    assert wrong_type.json()["error"]["param"] == "model"
    assert wrong_type.json()["error"]["message"].startswith("model: ")
    assert unknown.status_code == 404
    assert unknown.content == envelope(
        "Invalid URL (GET /nope)", "invalid_request_error", None, "unknown_url"
    )
    assert method.status_code == 405
    assert method.headers["allow"] == "GET"
    assert method.json()["error"]["code"] == "method_not_allowed"
    assert surrogate.status_code == 400
    assert surrogate.json()["error"]["message"].startswith("The request contains text")


def test_errors_are_written_by_the_library_renderer() -> None:
    # render_error adds the request's trace id to the envelope; a hand-built body would not
    with client(trace_id="4bf92f3577b34da6a3ce929d0e0e4736") as http:
        response = http.get("/model")
    assert response.status_code == 404
    assert response.json()["error"]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert response.json()["error"]["code"] == "model_not_found"


def test_no_module_of_the_app_builds_an_error_envelope_by_hand() -> None:
    hand_built = re.compile(r"""\{\s*["']error["']\s*:""")
    found = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "reference_app").glob("*.py"))
        if hand_built.search(path.read_text())
    ]
    assert not found, found
