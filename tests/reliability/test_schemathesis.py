"""Schemathesis against the reference app's own OpenAPI document, with a valid token.

Every operation gets generated requests, valid and not, over a real socket through the full
stack: no answer may be a 5xx, and every error is the documented envelope. Chat and completion
bodies are held to a few tokens (``max_tokens`` clamped, or set when absent) so the generated
requests cost the real model little. Both generation modes run: valid requests (positive) and
requests that break the schema (negative).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from .conftest import Reporter, is_envelope, scale
from .stack import MODEL, Stack, serve_stack

pytestmark = [pytest.mark.model, pytest.mark.e2e]

EXAMPLES = scale(8, 150)
MAX_TOKENS = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serve_stack(tmp_path_factory.mktemp("schemathesis"), generation_timeout=30.0) as running:
        yield running


@pytest.fixture(scope="module")
def token(stack: Stack) -> str:
    return stack.token("--scope", "chat models:read embeddings", "--tier", "agent")


def bounded(body: Any) -> Any:
    """The generated body, with generation held to a few tokens and, for valid bodies, the
    served model (a random model name stops at a 404 before the rest of the body matters)."""
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        body["model"] = MODEL
    if isinstance(body, dict) and ("messages" in body or "prompt" in body):
        for field in ("max_tokens", "max_completion_tokens"):
            value = body.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_TOKENS:
                body[field] = MAX_TOKENS
        if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            body["max_tokens"] = MAX_TOKENS
    return body


def test_no_5xx_and_every_error_in_the_envelope(stack: Stack, token: str, report: Reporter) -> None:
    # driven with hypothesis directly: schemathesis's lazy pytest loader does not run on this
    # pytest (it sets a node attribute pytest 9 no longer has)
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    headers = {"authorization": f"Bearer {token}"}
    statuses: Counter[int] = Counter()
    operations = []
    no_negative: list[str] = []
    cases = [
        (result.ok(), mode)
        for result in schema.get_all_operations()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]
    for operation, mode in cases:
        operations.append(f"{operation.method.upper()} {operation.path}")

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy(mode))
        def call(case: Any) -> None:
            case.body = bounded(case.body)
            response = case.call(headers=headers, timeout=60)
            statuses[response.status_code] += 1
            where = f"{case.method} {case.formatted_path}"
            if response.status_code >= 500:
                failures = [line for line in stack.records.lines if "unhandled" in line]
                raise AssertionError(
                    f"{where} answered {response.status_code} to {case.body!r:.300}: "
                    f"{failures[-1][-1500:] if failures else response.text[:300]}"
                )
            if response.status_code >= 400:
                body = json.loads(response.content)
                assert is_envelope(body), (where, response.status_code, body)
                assert "x-request-id" in response.headers

        try:
            call()
        except Unsatisfiable:
            # an operation without parameters or body has no request that breaks its schema
            if mode is not GenerationMode.NEGATIVE:
                raise
            no_negative.append(operations[-1])
    report("operations", len(set(operations)))
    report("operations without schema-breaking requests", len(no_negative))
    report("requests", sum(statuses.values()))
    report("statuses", dict(sorted(statuses.items())))
    assert operations
    assert not any(status >= 500 for status in statuses)
    assert stack.leaks() == []
