"""Property-based fuzzing of every parser the library owns.

Each parser must never raise anything but its documented error, and must round-trip what it
should. The header parsers that live inside the middlewares (Authorization, DPoP, traceparent,
Prefer, X-Forwarded-For, Idempotency-Key) are fuzzed through the real stack in
test_fuzz_stack.py; the pure functions are fuzzed here, directly.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimiddleware._asgi import json_body
from aimiddleware._openai import LLMResponse, parse_llm_request
from aimiddleware._sse import SSEParser
from aimiddleware.errors import wants_problem
from aimiddleware.idempotency._keys import MAX_KEY_LENGTH, InvalidKeyError, parse_key
from aimiddleware.normalize._routes import prefers_minimal
from aimiddleware.ratelimit._identity import ProxyTrust, client_address

from .conftest import scale

EXAMPLES = scale(300, 3000)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)
visible = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)


@FUZZ
@given(st.binary(max_size=400))
def test_idempotency_key_raises_only_invalid_key_error(raw: bytes) -> None:
    try:
        key = parse_key(raw)
    except InvalidKeyError:
        return
    assert 0 < len(key) <= MAX_KEY_LENGTH
    assert all(0x20 <= ord(c) <= 0x7E for c in key)


@FUZZ
@given(visible.filter(lambda k: 0 < len(k) <= MAX_KEY_LENGTH))
def test_idempotency_key_round_trips_as_a_structured_field_string(key: str) -> None:
    quoted = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    assert parse_key(quoted.encode()) == key


@FUZZ
@given(st.lists(st.binary(max_size=60), max_size=8), st.data())
def test_sse_parser_gives_the_same_events_however_the_stream_is_cut(
    pieces: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(pieces) + b"\n\n"
    whole = SSEParser()
    expected = whole.feed(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    parser = SSEParser()
    got = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got.extend(parser.feed(stream[start:cut]))
        start = cut
    assert got == expected
    # nothing is lost or invented: the raw bytes of the events plus what is pending are the input
    assert b"".join(e.raw for e in got) + parser.pending == stream


@FUZZ
@given(st.lists(visible.filter(lambda s: "\n" not in s and "\r" not in s), min_size=1, max_size=5))
def test_sse_data_lines_round_trip(lines: list[str]) -> None:
    raw = "".join(f"data: {line}\n" for line in lines).encode() + b"\n"
    (event,) = SSEParser().feed(raw)
    assert event.data == "\n".join(lines)
    assert event.raw == raw


@FUZZ
@given(st.text(max_size=300) | json_values.map(json.dumps))
def test_response_scanner_never_raises_on_event_data(data: str) -> None:
    LLMResponse().observe_event_data(data)


@FUZZ
@given(st.binary(max_size=400) | json_values.map(lambda v: json.dumps(v).encode()))
def test_response_scanner_never_raises_on_bodies(body: bytes) -> None:
    LLMResponse().observe_body(body)


def test_response_scanner_survives_deeply_nested_json() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    response = LLMResponse()
    assert response.observe_event_data(deep) is None
    response.observe_body(deep.encode())
    assert response.chunks == 0


@FUZZ
@given(
    st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/x"]),
    json_values,
)
def test_request_scanner_never_raises(path: str, body: Any) -> None:
    request = parse_llm_request(path, body)
    if request is not None:
        assert request.max_tokens is None or request.max_tokens >= 0
        assert request.prompt_chars >= 0


@FUZZ
@given(st.integers(0, 1_000_000), st.text(max_size=50), st.booleans())
def test_request_scanner_reads_back_what_it_was_given(
    max_tokens: int, content: str, stream: bool
) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
    request = parse_llm_request("/v1/chat/completions", body)
    assert request is not None
    assert (request.max_tokens, request.stream, request.prompt_chars) == (
        max_tokens,
        stream,
        len(content),
    )


@FUZZ
@given(st.binary(max_size=2000))
def test_json_body_returns_none_or_the_parsed_value(body: bytes) -> None:
    scope: dict[str, Any] = {"aimiddleware.body": body}
    try:
        expected = json.loads(body)
    except (ValueError, RecursionError):
        expected = None
    assert json_body(scope) == expected or json_body(scope) is None


@FUZZ
@given(st.lists(st.binary(max_size=120), max_size=4))
def test_prefer_never_raises(values: list[bytes]) -> None:
    assert isinstance(prefers_minimal(values), bool)


@FUZZ
@given(st.binary(max_size=200))
def test_accept_never_raises(value: bytes) -> None:
    assert isinstance(wants_problem(value), bool)


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["127.0.0.1", "10.0.0.5", "::1", "x"]))
def test_forwarded_for_never_raises_and_never_exceeds_64_chars(header: bytes, peer: str) -> None:
    trust = ProxyTrust(["127.0.0.0/8", "::1"], "trusted_proxies")
    scope = {"client": (peer, 1234), "headers": [(b"x-forwarded-for", header)]}
    address = client_address(scope, trust)
    assert isinstance(address, str)
    assert len(address) <= 64
    if peer not in trust:
        # an untrusted peer never chooses its address through the header
        assert address == peer
