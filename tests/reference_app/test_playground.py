"""The playground page at ``/``, driven in headless Chromium against the real model."""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from playwright.sync_api import Playwright, sync_playwright

from reference_app import DemoToken, Settings, create_app
from reference_app.playground import PAGE_PATHS
from reference_app.telemetry import Telemetry
from testkit.responses_app import event, response_events

from ..live import wait_until
from ..servers import ThreadedServer
from .browser import Playground, playground_page
from .conftest import LONG_SCHEMA, MODEL, health, wait_ready
from .stand_in import HeaderStandIn

pytestmark = [pytest.mark.model, pytest.mark.e2e]

Factory = Callable[..., AbstractContextManager[ThreadedServer]]
# Greedy decoding makes this prompt run to any max_tokens (the model loops), so a stop or a
# deadline always lands mid-stream.
LONG_PROMPT = "Write a long story about a dragon who learns to sing."
QUOTED_UUID = re.compile(r'^"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"$')


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser(playwright: Playwright, tmp_path: Path) -> Iterator[Playground]:
    with playground_page(playwright, tmp_path / "profile") as playground:
        yield playground
        assert playground.errors == [], "the page raised script errors"


def jwt_claims(token: str) -> Any:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def span_trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


# ---- served files and the demo-token seam, over a plain socket --------------------------------


def test_page_and_assets_are_served_with_a_strict_policy(reference_server: ThreadedServer) -> None:
    url = reference_server.url
    page = httpx.get(f"{url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert src.startswith("/") or src.startswith("data:"), f"{src} is not on this server"
    for asset, kind in [
        ("playground.js", "javascript"),
        ("sse.js", "javascript"),
        ("inspector.js", "javascript"),
        ("responses.js", "javascript"),
        ("playground.css", "text/css"),
    ]:
        r = httpx.get(f"{url}/playground/{asset}", timeout=10)
        assert r.status_code == 200, asset
        assert kind in r.headers["content-type"], asset
    # the page is not part of the API's schema
    assert "/demo/token" not in httpx.get(f"{url}/openapi.json", timeout=10).text


def test_demo_token_is_a_404_in_the_openai_envelope_when_demo_mode_is_off(
    reference_server: ThreadedServer,
) -> None:
    r = httpx.get(f"{reference_server.url}/demo/token", timeout=10)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "demo_mode_off"
    assert r.json()["error"]["type"] == "invalid_request_error"


# ---- the page in a real browser ------------------------------------------------------------


def test_sse_parser_handles_split_line_endings_comments_and_multiline_data(
    reference_server: ThreadedServer, browser: Playground
) -> None:
    browser.open(reference_server.url)
    chunks = [
        ": heartbeat\r",
        '\ndata: {"a":',
        "1}\r",
        "\n\r\ndata: one\ndata: two\n",
        '\nevent: error\ndata: {"error":{}}\n\n',
        "data: tail-without-blank-line",
    ]
    parsed = browser.page.evaluate(
        """async (chunks) => {
          const { SSEParser } = await import("/playground/sse.js");
          const parser = new SSEParser();
          return chunks.flatMap((chunk) => [...parser.feed(chunk)]);
        }""",
        chunks,
    )
    assert [(e["event"], e["data"]) for e in parsed] == [
        ("message", '{"a":1}'),
        ("message", "one\ntwo"),
        ("error", '{"error":{}}'),
    ]


def test_the_responses_reader_takes_typed_events(
    reference_server: ThreadedServer, browser: Playground
) -> None:
    # the stream the Responses API sends, then one cut by its error event, read as the page does
    completed = response_events(["Hel", "lo", "!"], usage=(9, 3))
    failed = [*response_events(["a"])[:5], event("error", 5, code="internal_error", message="m")]
    browser.open(reference_server.url)
    steps = browser.page.evaluate(
        """async (streams) => {
          const { SSEParser } = await import("/playground/sse.js");
          const { responsesStep } = await import("/playground/responses.js");
          return streams.map((stream) => [...new SSEParser().feed(stream)].map(
            (e) => responsesStep(e, JSON.parse(e.data))));
        }""",
        [b"".join(completed).decode(), b"".join(failed).decode()],
    )
    done, cut = steps
    assert "".join(step.get("delta") or "" for step in done) == "Hello!"
    assert done[-1] == {
        "usage": {"completion_tokens": 3, "prompt_tokens": 9},
        "finish": "completed",
        "ended": True,
    }
    assert [s for s in done[:-1] if s.get("ended")] == []
    assert cut[-1]["ended"] is True
    assert cut[-1]["error"]["error"]["code"] == "internal_error"
    assert cut[-1]["error"]["error"]["message"] == "m"


def test_the_switch_streams_the_responses_api(
    reference_server: ThreadedServer, browser: Playground
) -> None:
    browser.open(reference_server.url)
    browser.use_api("responses")
    browser.settings(max_tokens=32)
    watched = browser.watch(browser.send("Write a short poem about the sea."))

    assert watched["status"] == "done", browser.fact("error-message")
    growing = [n for n in watched["lengths"] if n > 0]
    assert len(growing) >= 3, f"the answer appeared in {len(growing)} steps: {watched['lengths']}"
    answer = browser.last_answer().locator(".content").inner_text()
    assert answer.strip()
    meta = browser.last_answer().locator(".meta").inner_text()
    assert "Responses API" in meta
    assert "finish: completed" in meta or "finish: max_output_tokens" in meta
    assert "completion" in browser.fact("tokens")
    assert browser.traffic.chats == []
    (sent,) = browser.traffic.responses
    body = sent.post_data_json
    assert body["input"] == [{"role": "user", "content": "Write a short poem about the sea."}]
    assert (body["stream"], body["max_output_tokens"], body["model"]) == (True, 32, MODEL)
    assert "messages" not in body
    assert QUOTED_UUID.match(sent.headers["idempotency-key"])

    # the next turn carries the conversation so far as input items
    browser.settings(max_tokens=8)
    assert browser.watch(browser.send("Thank you."))["status"] == "done"
    history = browser.traffic.responses[1].post_data_json["input"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert history[1]["content"] == answer
    browser.screenshot("playground-responses.png")


def test_tokens_stream_in_and_each_send_has_a_fresh_idempotency_key(
    reference_server: ThreadedServer, browser: Playground
) -> None:
    browser.open(reference_server.url)
    browser.settings(max_tokens=48)
    before = browser.send("Write a short poem about the sea.")
    watched = browser.watch(before)

    assert watched["status"] == "done"
    lengths = watched["lengths"]
    growing = [n for n in lengths if n > 0]
    assert len(growing) >= 3, f"the answer appeared in {len(growing)} steps: {lengths}"
    assert growing == sorted(growing)
    answer = browser.last_answer().locator(".content").inner_text()
    assert answer.strip()
    assert "finish:" in browser.last_answer().locator(".meta").inner_text()
    assert browser.fact("status") == "200 OK"
    assert "completion" in browser.fact("tokens")
    assert browser.fact("trace-id") == "—"  # no tracer configured: no trace, no header
    # the normalisation middleware's request id, as the response carried it
    response = browser.traffic.chats[0].response()
    assert response is not None
    assert browser.fact("request-id") == response.headers["x-request-id"]
    browser.screenshot("playground-stream.png")

    first = browser.traffic.chats[0]
    assert first.headers["accept"] == "text/event-stream"
    first_key = first.headers["idempotency-key"]
    assert QUOTED_UUID.match(first_key)
    assert browser.fact("idempotency-key") == first_key.strip('"')
    assert browser.traffic.chat_body(0)["stream"] is True
    assert browser.traffic.chat_body(0)["model"] == MODEL
    assert "authorization" not in first.headers  # demo mode is off on this server

    # the second turn (sent with Enter) carries the conversation so far, and a new key
    browser.settings(max_tokens=8)
    browser.watch(browser.send("Thank you.", key="Enter"))
    second = browser.traffic.chats[1]
    assert QUOTED_UUID.match(second.headers["idempotency-key"])
    assert second.headers["idempotency-key"] != first_key
    history = browser.traffic.chat_body(1)["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert history[1]["content"] == answer

    # nothing was fetched from anywhere but this server, and PAGE_PATHS (what auth makes public
    # and a rate limiter may exempt) is exactly what the page loads besides the API
    assert all(u.startswith(reference_server.url) for u in browser.traffic.urls), browser.traffic
    paths = {urlsplit(u).path for u in browser.traffic.urls}
    assert paths - {"/health", "/v1/chat/completions"} == set(PAGE_PATHS)


def test_stop_aborts_the_generation_on_the_server(
    reference_server: ThreadedServer, browser: Playground
) -> None:
    url = reference_server.url
    browser.open(url)
    browser.settings(max_tokens=1500, temperature=0)
    cancelled = health(url)["generations_cancelled"]
    browser.send(LONG_PROMPT)
    browser.page.wait_for_function(
        "() => document.querySelector('.turn.assistant:last-of-type .content')"
        ".textContent.length > 20"
    )
    browser.page.click("#stop")

    answer = browser.last_answer()
    browser.page.wait_for_selector(".turn.assistant[data-status='stopped']")
    assert "stopped" in answer.locator(".meta").inner_text()
    assert browser.page.is_disabled("#stop")
    assert browser.page.is_enabled("#send")
    assert browser.page.is_hidden("#error")
    # the abort closed the connection and the server cancelled the generation
    assert wait_until(lambda: health(url)["generations_cancelled"] == cancelled + 1)
    assert wait_until(lambda: health(url)["generations_active"] == 0)
    stopped_at = len(answer.locator(".content").inner_text())
    time.sleep(0.3)
    assert len(answer.locator(".content").inner_text()) == stopped_at


def test_an_overloaded_server_error_is_shown_with_its_envelope(
    reference_factory: Factory, browser: Playground
) -> None:
    # The rate limiter is not part of this app yet; the queue-full 503 is the real error path
    # through which the page meets an OpenAI error envelope with Retry-After.
    with reference_factory(instances=1, max_queue=0) as server:
        browser.open(server.url)
        occupy = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "List numbers."}],
            "response_format": LONG_SCHEMA,
            "max_tokens": 1500,
            "stream": True,
        }
        with httpx.stream(
            "POST", f"{server.url}/v1/chat/completions", json=occupy, timeout=60
        ) as busy:
            lines = busy.iter_lines()
            next(lines)  # the only instance is generating for this stream now
            browser.settings(max_tokens=16)
            browser.watch(browser.send("Hello?"))

            assert browser.page.is_visible("#error")
            assert "HTTP 503" in browser.fact("error-title")
            assert "Request id" in browser.fact("error-message")
            fields = browser.fact("error-fields")
            assert "server_error" in fields
            assert "service_unavailable" in fields
            assert "retry after" in fields
            assert browser.fact("status").startswith("503")
            response = browser.traffic.chats[-1].response()
            assert response is not None
            assert browser.fact("request-id") == response.headers["x-request-id"]
            assert browser.last_answer().get_attribute("data-status") == "error"
            browser.screenshot("playground-error.png")


def test_an_error_event_in_the_middle_of_a_stream_is_shown(
    reference_factory: Factory, browser: Playground
) -> None:
    with reference_factory(generation_timeout=4.0) as server:
        # a first generation pays the model's warm-up, which must not eat the page's deadline
        warm = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        httpx.post(f"{server.url}/v1/chat/completions", json=warm, timeout=30)
        browser.open(server.url)
        browser.settings(max_tokens=1500, temperature=0)
        watched = browser.watch(browser.send(LONG_PROMPT))

        assert watched["status"] == "error"
        assert max(watched["lengths"]) > 0, "tokens arrived before the error"
        assert browser.fact("status") == "200 OK"
        assert "stream ended with an error" in browser.fact("error-title")
        assert "deadline" in browser.fact("error-message")
        assert "generation_timeout" in browser.fact("error-fields")


def test_demo_mode_on_the_development_issuer_lets_the_page_chat(
    reference_factory: Factory, browser: Playground, tmp_path: Path
) -> None:
    settings = {"auth": True, "demo": True, "auth_key_file": tmp_path / "key.json"}
    with reference_factory(**settings) as server:
        r = httpx.get(f"{server.url}/demo/token", timeout=10)
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        grant = r.json()
        assert (grant["token_type"], grant["expires_in"], grant["scope"]) == ("Bearer", 300, "chat")
        claims = jwt_claims(grant["access_token"])
        assert claims["aud"] == server.url
        assert claims["scope"] == "chat"
        assert claims["exp"] - claims["iat"] == 300

        browser.open(server.url)
        browser.page.wait_for_selector("#auth[data-state='ok']")
        browser.settings(max_tokens=8)
        watched = browser.watch(browser.send("Hi"))
        assert watched["status"] == "done"
        assert browser.fact("status") == "200 OK"
        sent = browser.traffic.chats[-1].headers["authorization"]
        assert jwt_claims(sent.removeprefix("Bearer "))["client_id"] == "playground"
        assert browser.fact("replayed").startswith("no")
        answer = browser.last_answer().locator(".content").inner_text()

        # the same key again: the idempotency middleware replays the stored stream
        browser.page.click("#resend")
        browser.watch(1)
        first, again = browser.traffic.chats
        assert again.headers["idempotency-key"] == first.headers["idempotency-key"]
        assert browser.fact("replayed").startswith("yes")
        assert "replayed" in browser.last_answer().locator(".meta").inner_text()
        assert browser.last_answer().locator(".content").inner_text() == answer
        browser.screenshot("playground-replay.png")


def test_auth_on_without_demo_mode_shows_the_401_challenge(
    reference_factory: Factory, browser: Playground, tmp_path: Path
) -> None:
    settings = {"auth": True, "auth_key_file": tmp_path / "key.json"}
    with reference_factory(**settings) as server:
        browser.open(server.url)
        browser.page.wait_for_selector("#auth[data-state='neutral']")
        browser.settings(max_tokens=8)
        watched = browser.watch(browser.send("Hi"))
        assert watched["status"] == "error"
        assert "authorization" not in browser.traffic.chats[-1].headers
        assert "HTTP 401" in browser.fact("error-title")
        fields = browser.fact("error-fields")
        assert "invalid_api_key" in fields
        assert "www-authenticate" in fields
        assert f'resource_metadata="{server.url}/.well-known/oauth-protected-resource"' in fields
        assert "--demo" in fields  # the page says how to get a token
        browser.screenshot("playground-401.png")


def test_a_custom_token_issuer_is_fetched_and_sent_as_bearer(
    reference_factory: Factory, browser: Playground
) -> None:
    issued: list[str] = []

    def issue() -> DemoToken:
        issued.append(secrets.token_urlsafe(24))
        return DemoToken(access_token=issued[-1], expires_in=300, scope="chat")

    with reference_factory(demo_tokens=issue) as server:
        r = httpx.get(f"{server.url}/demo/token", timeout=10)
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        assert r.json() == {
            "access_token": issued[-1],
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "chat",
        }

        browser.open(server.url)
        browser.page.wait_for_selector("#auth[data-state='ok']")
        browser.settings(max_tokens=8)
        browser.watch(browser.send("Hi"))
        sent = browser.traffic.chats[-1].headers["authorization"]
        assert sent.startswith("Bearer ")
        assert sent.removeprefix("Bearer ") in issued[1:]  # a token the page itself fetched


def test_a_failing_token_issuer_is_a_503_and_one_log_line(
    reference_factory: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "issuer-key.json"  # never created: the issuer cannot sign

    def issue() -> DemoToken:
        return DemoToken(access_token=key_file.read_text(), expires_in=300)

    with reference_factory(demo_tokens=issue) as server:
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="reference_app"):
            r = httpx.get(f"{server.url}/demo/token", timeout=10)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    # the stack's normalisation rebuilds a 5xx from its status alone: nothing of the app's text
    assert r.json()["error"]["code"] == "service_unavailable"
    assert r.json()["error"]["type"] == "server_error"
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "reference_app"]
    assert len(lines) == 1
    assert "FileNotFoundError" in lines[0]


def test_the_trace_id_of_the_request_span_is_shown(browser: Playground) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(Settings(auth=False), telemetry=Telemetry(tracer_provider=provider))
    try:
        with ThreadedServer(app) as server:
            wait_ready(server.url)
            browser.open(server.url)
            browser.settings(max_tokens=8)
            assert browser.watch(browser.send("Hi"))["status"] == "done"
            response = browser.traffic.chats[-1].response()
            assert response is not None
            shown = browser.fact("trace-id")
            assert response.headers["x-trace-id"] == shown

            def chat_spans() -> list[ReadableSpan]:
                return [
                    span
                    for span in exporter.get_finished_spans()
                    if span.kind is SpanKind.SERVER
                    and span.attributes
                    and span.attributes.get("url.path") == "/v1/chat/completions"
                ]

            assert wait_until(lambda: len(chat_spans()) == 1)
            assert span_trace_id(chat_spans()[0]) == shown
    finally:
        provider.shutdown()


def test_a_traceparent_on_the_response_is_read_as_the_trace_id(browser: Playground) -> None:
    stand_in = HeaderStandIn(create_app(Settings(auth=False)))
    with ThreadedServer(stand_in) as server:
        wait_ready(server.url)
        browser.open(server.url)
        browser.settings(max_tokens=8)
        browser.watch(browser.send("Hi"))
        assert browser.fact("trace-id") == stand_in.sent[-1]["traceparent"].split("-")[1]

        before = browser.page.locator(".turn.assistant").count()
        browser.page.click("#resend")
        browser.watch(before)
        first, again = browser.traffic.chats
        assert again.headers["idempotency-key"] == first.headers["idempotency-key"]
        assert again.post_data == first.post_data
        assert browser.fact("trace-id") == stand_in.sent[-1]["traceparent"].split("-")[1]


def test_rate_limit_headers_and_the_429_are_shown(
    reference_factory: Factory, browser: Playground
) -> None:
    with reference_factory(human_requests="2/minute") as server:
        browser.open(server.url)  # the page's own paths are exempt: only chats count
        browser.settings(max_tokens=4)
        for _ in range(2):
            assert browser.watch(browser.send("Hi"))["status"] == "done"
        response = browser.traffic.chats[-1].response()
        assert response is not None
        limits = browser.page.inner_text("#limits")
        for item in response.headers["ratelimit"].split(","):
            name, *params = item.strip().split(";")
            remaining = dict(p.split("=") for p in params)["r"]
            assert f"{name.strip(chr(34))}\t{remaining} / " in limits
        remaining_requests = response.headers["x-ratelimit-remaining-requests"]
        assert f"x-ratelimit requests\t{remaining_requests} / " in limits

        watched = browser.watch(browser.send("Hi"))
        assert watched["status"] == "error"
        assert "HTTP 429" in browser.fact("error-title")
        fields = browser.fact("error-fields")
        assert "rate_limit_exceeded" in fields
        assert "retry after" in fields
        assert browser.fact("status").startswith("429")
        assert browser.page.is_visible("#limits")
        browser.screenshot("playground-rate-limit.png")
