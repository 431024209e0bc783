"""Hostile headers through the full stack over a real socket, with and without a valid token.

The header parsers live inside the middlewares: Authorization (Bearer and DPoP schemes), the
DPoP proof, traceparent/tracestate, Prefer, X-Forwarded-For and Idempotency-Key. Whatever they
are sent, the answer is never a 5xx, every error is in the documented envelope, and the worker
stays healthy.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Reporter, is_envelope, scale
from .stack import Stack, chat, serve_stack

pytestmark = [pytest.mark.model, pytest.mark.e2e]

EXAMPLES = scale(80, 1000)


def field_value(raw: bytes) -> bytes:
    """What RFC 9110 lets a field value be (no controls, no edge whitespace): anything else is
    refused by the HTTP server before the stack sees it."""
    return bytes(c for c in raw if c == 9 or 0x20 <= c <= 0x7E or c >= 0x80).strip(b" \t")


# field values biased towards the syntax the parsers look for
header_value = st.one_of(
    st.binary(max_size=200).map(field_value),
    st.lists(
        st.sampled_from(
            [
                b"Bearer ",
                b"DPoP ",
                b"00-",
                b"-01",
                b"return=minimal",
                b";",
                b",",
                b'"',
                b"\\",
                b"=",
                b"eyJ",
                b".",
                b"a" * 64,
                b"0" * 32,
                b"::1",
                b"127.0.0.1",
                b" ",
                b"\t",
                b"\xff",
            ]
        ),
        max_size=12,
    ).map(lambda parts: field_value(b"".join(parts))),
)
hostile = st.fixed_dictionaries(
    {},
    optional={
        "authorization": header_value,
        "dpop": header_value,
        "traceparent": header_value,
        "tracestate": header_value,
        "baggage": header_value,
        "prefer": header_value,
        "x-forwarded-for": header_value,
        "idempotency-key": header_value,
        "accept": header_value,
        "x-request-id": header_value,
    },
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serve_stack(
        tmp_path_factory.mktemp("fuzz-stack"),
        agent_requests="1000000/minute",
        agent_tokens="1000000000/minute",
        trusted_proxies=["127.0.0.1"],
    ) as running:
        yield running


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert is_envelope(response.json()), response.text


def test_hostile_headers_never_cause_a_5xx(stack: Stack, report: Reporter) -> None:
    token = stack.token("--scope", "chat models:read", "--tier", "agent")
    statuses: dict[int, int] = {}

    with httpx.Client(base_url=stack.url, timeout=30) as client:

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        @given(hostile, st.booleans(), st.booleans())
        def probe(headers: dict[str, bytes], with_token: bool, post: bool) -> None:
            sent = dict(headers)
            if with_token and "authorization" not in sent:
                sent["authorization"] = f"Bearer {token}".encode()
            if post:
                response = client.post(
                    "/v1/chat/completions", json=chat(max_tokens=1), headers=sent
                )
            else:
                response = client.get("/v1/models", headers=sent)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            check(response)

        probe()
    for status, count in sorted(statuses.items()):
        report(f"status {status}", count)
    assert stack.health()["status"] == "ok"
    assert stack.leaks() == []
