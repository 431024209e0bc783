"""A schema llama.cpp's converter refuses is a 400 in the server's words, not the converter's."""

from __future__ import annotations

from typing import Any

import pytest

from reference_app.checks import grammar
from reference_app.errors import APIError
from reference_app.schemas import ChatCompletionRequest


def request(schema: dict[str, Any]) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "s", "schema": schema},
            },
        }
    )


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/secret_internal_name"}}},
        {"$ref": "https://schemas.internal.example/private.json"},
        {"$ref": "file:///etc/passwd"},
        {"type": "string", "pattern": "a{2,1}{"},
    ],
    ids=["missing-ref", "remote-ref", "file-ref", "bad-pattern"],
)
def test_converter_errors_say_what_is_wrong_without_the_exception_text(
    schema: dict[str, Any],
) -> None:
    with pytest.raises(APIError) as caught:
        grammar(request(schema))
    error = caught.value.info
    assert error.status == 400
    assert error.param == "response_format"
    assert error.message.startswith("Unsupported JSON schema in response_format: ")
    for leaked in ("secret_internal_name", "internal.example", "/etc/passwd", "allow-fetch",
                   "Error resolving", "Unsupported ref", "quantifier"):  # fmt: skip
        assert leaked not in error.message
