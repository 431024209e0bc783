from __future__ import annotations

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from aimiddleware.normalize import NormalizeMiddleware

from .test_errors import call, error_of

pytestmark = pytest.mark.anyio


class Chat(BaseModel):
    model: str
    max_tokens: int | None = None


def fastapi_app() -> FastAPI:
    api = FastAPI()

    @api.post("/v1/chat/completions")
    async def chat(body: Chat) -> dict[str, str]:
        return {"model": body.model}

    return api


async def test_a_truncated_json_body_is_a_parse_error_not_a_field() -> None:
    app = NormalizeMiddleware(fastapi_app())
    truncated = b'{"model": "m", "max_tokens": '
    response = await call(
        app,
        "POST",
        "/v1/chat/completions",
        content=truncated,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    error = error_of(response)
    # the offset FastAPI reports is a character position, never a parameter
    assert error["param"] is None
    assert error["code"] == "invalid_json"
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Could not parse the JSON body: ")
    assert f"(at character {len(truncated)})" in error["message"]
    assert "[" not in error["message"]


async def test_a_well_formed_body_with_a_wrong_type_still_names_its_field() -> None:
    app = NormalizeMiddleware(fastapi_app())
    response = await call(
        app, "POST", "/v1/chat/completions", json={"model": "m", "max_tokens": "x"}
    )
    error = error_of(response)
    assert error["param"] == "max_tokens"
    assert error["code"] == "invalid_type"
