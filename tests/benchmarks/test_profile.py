"""benchmarks.profile: the per-component breakdown, run on small in-process apps."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import registry
from benchmarks.apps import Config
from benchmarks.profile import component, profile
from benchmarks.report import render
from benchmarks.rundata import Run


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("/w/src/aimiddleware/tracing/middleware.py", "aimiddleware.tracing"),
        ("/w/src/aimiddleware/_asgi.py", "aimiddleware (shared)"),
        ("/v/lib/python3.11/site-packages/opentelemetry/sdk/trace/__init__.py", "opentelemetry"),
        ("/v/lib/python3.11/site-packages/starlette/routing.py", "starlette"),
        ("/usr/lib/python3.11/asyncio/base_events.py", "stdlib asyncio"),
        ("/usr/lib/python3.11/json/encoder.py", "stdlib json"),
        ("~", "built-ins"),
        ("/w/benchmarks/apps.py", "benchmark app and driver"),
    ],
)
def test_component_of_a_file(filename: str, expected: str) -> None:
    assert component(filename) == expected


def test_profile_of_the_bare_app_puts_starlette_first() -> None:
    result = profile(registry.CONFIGS["bare"], 50)
    shares = {c["component"]: c["share"] for c in result["components"]}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert result["components"][0]["component"] == "starlette"
    assert not any(name.startswith("aimiddleware") for name in shares)
    assert result["requests"] == 50


def test_profile_refuses_a_configuration_that_answers_with_an_error() -> None:
    async def unauthorised(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with pytest.raises(RuntimeError, match=r"t:401 answered 401 in process"):
        profile(Config("t:401", lambda: unauthorised), 5)


def test_fresh_keys_configurations_get_a_new_idempotency_key_per_request() -> None:
    keys: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        keys.append(dict(scope["headers"])[b"idempotency-key"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    profile(Config("t:keys", lambda: app, fresh_keys=True, headers={"X-A": "1"}), 10)
    assert len(keys) == len(set(keys)) > 10  # warm-up and measured requests, all distinct


def test_report_shows_the_breakdown() -> None:
    prof = {
        "name": "stack:memory",
        "requests": 100,
        "us_per_request_profiled": 2900.0,
        "components": [
            {"component": "opentelemetry", "share": 0.239},
            {"component": "aimiddleware.idempotency", "share": 0.106},
        ],
        "functions": [
            {
                "function": "__init__.py:41(_clean_attribute_value)",
                "component": "opentelemetry",
                "share": 0.058,
                "calls": 5500,
            }
        ],
    }
    text = render(Run(profile={"profiles": [prof]}))
    section = text.split("## Where the time goes", 1)[1]
    assert "`stack:memory`, 100 requests, 2900 us/request under the profiler" in section
    assert "| opentelemetry | 23.9% |" in section
    assert "| `__init__.py:41(_clean_attribute_value)` | opentelemetry | 5500 | 5.8% |" in section
