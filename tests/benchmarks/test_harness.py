"""The benchmark harness's own logic: configurations, wrk scripts, the suite's plan.

Nothing here measures time; the apps are driven message by message.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks import apps, load, registry, suite
from benchmarks.apps import Config, missing
from benchmarks.configs_series import STREAM_BODY, sized_body, stream_events, streaming_app
from benchmarks.configs_stack import STACK_HEADERS, fresh_keys_lua
from benchmarks.registry import collect

from ..asgi import http_scope, request_receive


@pytest.mark.parametrize("size", [1_000, 10_000, 1_000_000])
def test_sized_body_is_a_chat_request_of_exactly_that_many_bytes(size: int) -> None:
    body = sized_body(size)
    assert len(body) == size
    request = json.loads(body)
    assert request["model"] == json.loads(apps.REQUEST_BODY)["model"]
    assert set(request["messages"][0]["content"]) == {"x"}


def test_sized_body_refuses_a_size_below_the_empty_request() -> None:
    with pytest.raises(ValueError, match="at least"):
        sized_body(10)


def test_stream_events_are_openai_chunks_then_usage_then_done() -> None:
    events = stream_events(5)
    assert len(events) == 5 + 3
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in events)
    first = json.loads(events[0][6:])
    assert first["choices"][0]["delta"]["content"] == " tok0"
    assert json.loads(events[-2][6:])["usage"]["completion_tokens"] == 5
    assert events[-1] == b"data: [DONE]\n\n"


@pytest.mark.anyio
async def test_streaming_app_sends_one_body_message_per_event() -> None:
    sent: list[dict[str, Any]] = []
    receive = request_receive(STREAM_BODY)  # the client stays connected until the stream ends

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope(headers=[(b"content-type", b"application/json")])
    await streaming_app(4)(scope, receive, send)
    start = sent[0]
    assert start["type"] == "http.response.start"
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    bodies = [m["body"] for m in sent[1:] if m["body"]]
    assert bodies == stream_events(4)


def test_fresh_keys_script_sets_the_headers_and_a_key_per_request() -> None:
    script = fresh_keys_lua(b'{"a": "b\\"c"}', STACK_HEADERS)
    assert 'wrk.body = "{\\"a\\": \\"b\\\\\\"c\\"}"' in script
    assert f'wrk.headers["Authorization"] = "{STACK_HEADERS["Authorization"]}"' in script
    assert 'wrk.headers["Idempotency-Key"] = "bench-" .. prefix .. "-" .. counter' in script


def test_every_wrk_script_reports_the_latency_distribution() -> None:
    plain = load._wrk_script(Config("t", apps.bare_app, body=b"{}"))
    scripted = load._wrk_script(Config("t", apps.bare_app, lua="-- custom\n"))
    for script in (plain, scripted):
        assert "done = function(summary, latency, requests)" in script
        assert "latency:percentile(p)" in script
    assert "wrk.body = " + json.dumps("{}") in plain
    assert scripted.startswith("-- custom\n")


def test_missing_names_the_import_error() -> None:
    assert missing(("json:dumps",)) is None
    reason = missing(("json:dumps", "aimiddleware_no_such_module:X"))
    assert reason is not None
    assert reason.startswith("not available yet: ModuleNotFoundError:")
    assert "aimiddleware_no_such_module" in reason
    attribute = missing(("json:no_such_name",))
    assert attribute is not None
    assert "AttributeError" in attribute


NOT_HERE = ("aimiddleware_no_such_module:X",)


def test_a_configuration_that_cannot_be_built_here_is_listed_with_the_reason() -> None:
    cfg = Config("stack:x", apps.bare_app, group="stack", requires=NOT_HERE)
    configs, unavailable = collect([cfg])
    assert "stack:x" not in configs
    recorded, reason = unavailable["stack:x"]
    assert recorded is cfg
    assert "aimiddleware_no_such_module" in reason


def test_a_fallback_peer_gives_way_to_the_one_defined_before_it() -> None:
    theirs = Config("peer:x", apps.bare_app, group="peers")
    fallback = Config("peer:x", apps.bare_app, group="peers", fallback=True)
    configs, _ = collect([theirs, fallback])
    assert configs["peer:x"] is theirs


def test_a_fallback_peer_is_replaced_by_one_defined_after_it_in_its_place() -> None:
    fallback = Config("peer:x", apps.bare_app, group="peers", fallback=True)
    theirs = Config("peer:x", apps.bare_app, group="peers", description="theirs")
    after = Config("peer:y", apps.bare_app, group="peers")
    configs, _ = collect([fallback, after, theirs])
    assert configs["peer:x"] is theirs
    assert list(configs) == ["peer:x", "peer:y"]
    with pytest.raises(ValueError, match="defined twice"):
        collect([fallback, theirs, Config("peer:x", apps.bare_app, group="peers")])


def test_an_unavailable_fallback_is_replaced_by_a_working_configuration() -> None:
    fallback = Config("peer:x", apps.bare_app, group="peers", requires=NOT_HERE, fallback=True)
    theirs = Config("peer:x", apps.bare_app, group="peers")
    configs, unavailable = collect([fallback, theirs])
    assert configs["peer:x"] is theirs
    assert "peer:x" not in unavailable


def test_a_name_cannot_be_defined_twice() -> None:
    with pytest.raises(ValueError, match="'stack:x' defined twice"):
        collect([Config("stack:x", apps.bare_app), Config("stack:x", apps.bare_app)])
    with pytest.raises(ValueError, match="twice as a fallback"):
        collect([Config("p", apps.bare_app, fallback=True)] * 2)


def test_full_stack_configurations_are_registered_or_explained() -> None:
    for name in ("stack:memory", "stack:redis"):
        assert (name in registry.CONFIGS) != (name in registry.UNAVAILABLE)
    if "stack:redis" in registry.CONFIGS:
        assert registry.CONFIGS["stack:redis"].needs == ("redis",)
    else:
        assert registry.UNAVAILABLE["stack:redis"][1].startswith("not available yet: ")


def test_every_configuration_module_is_listed_and_none_imports_the_registry() -> None:
    folder = Path(registry.__file__).parent
    listed = {module.__name__.rpartition(".")[2] for module in registry.MODULES}
    sources = {path.stem: path.read_text() for path in folder.glob("*.py")}
    assert listed == {name for name, source in sources.items() if "\nCONFIGS = " in source}
    imports_registry = re.compile(r"^\s*(?:from|import)\s.*\bregistry\b", re.M)
    assert not [name for name in listed if imports_registry.search(sources[name])]


def test_serve_factory_builds_the_configuration_named_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks.serve import factory

    monkeypatch.setenv("AIMW_BENCH_CONFIG", "size:bare:1k")
    app = factory()
    assert [route.path for route in app.routes] == ["/v1/chat/completions"]


def test_quick_plan_is_shorter_and_writes_every_part_into_the_run_directory(
    tmp_path: Path,
) -> None:
    quick = suite.commands(list(suite.PARTS), suite.QUICK, tmp_path)
    full = suite.commands(list(suite.PARTS), suite.FULL, tmp_path)
    assert set(quick) == set(suite.PARTS)
    for part, name in (("http", "http.json"), ("scaling", "scaling.json")):
        assert quick[part][quick[part].index("--out") + 1] == str(tmp_path / name)
    assert "--skip-concurrency" in quick["streaming"]
    assert "--skip-concurrency" not in full["streaming"]
    assert quick["stream-cost"][2] == "benchmarks.stream_cost_stack"
    assert suite.QUICK.rounds < suite.FULL.rounds
    assert suite.QUICK.duration < suite.FULL.duration
    assert set(suite.commands(["http"], suite.QUICK, tmp_path)) == {"http"}


@pytest.mark.anyio
async def test_as_client_sends_the_api_key_and_a_fresh_idempotency_key() -> None:
    from benchmarks.stream_cost_stack import as_client

    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    shim = as_client(app)
    bare = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    for _ in range(2):
        await shim(dict(bare), None, None)
    keys = []
    for scope in seen:
        headers = dict(scope["headers"])
        assert headers[b"authorization"] == STACK_HEADERS["Authorization"].encode()
        keys.append(headers[b"idempotency-key"])
        assert scope["raw_path"] == b"/v1/chat/completions"
        assert scope["client"] == ("127.0.0.1", 40000)
        assert scope["query_string"] == b""
    assert keys[0] != keys[1]
    lifespan = {"type": "lifespan"}
    await shim(lifespan, None, None)
    assert seen[-1] is lifespan


def test_stream_cost_stack_says_so_when_the_per_chunk_script_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from benchmarks import stream_cost_stack

    monkeypatch.setitem(sys.modules, "benchmarks.stream_cost", None)  # import fails as if absent
    with pytest.raises(SystemExit, match=r"benchmarks/stream_cost\.py is not available"):
        stream_cost_stack.main([])


def test_without_wrk_the_lua_scripted_configurations_are_listed_not_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripted = registry.CONFIGS["idempotency:memory-fresh"]
    assert scripted.lua  # a fresh Idempotency-Key per request
    monkeypatch.setattr(load, "generator", lambda: "python")
    assert "needs wrk" in (load.unrunnable(scripted) or "")
    assert load.unrunnable(registry.CONFIGS["bare"]) is None
    monkeypatch.setattr(load, "generator", lambda: "wrk")
    assert load.unrunnable(scripted) is None
