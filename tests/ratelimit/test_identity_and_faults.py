"""Who is counted (addresses, trusted proxies, the client-type header) and store faults."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from aimiddleware import ConfigurationError
from aimiddleware.ratelimit import RateLimitMiddleware, Tier

from .apps import SetPrincipal, Upstream
from .conftest import Keep

pytestmark = pytest.mark.anyio


def client(app: Any, peer: str = "10.0.0.9") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def codes(app: Any, n: int, *, peer: str, headers: dict[str, str] | None = None) -> list[int]:
    async with client(app, peer) as http:
        return [(await http.get("/ping", headers=headers)).status_code for _ in range(n)]


async def test_forwarded_for_only_from_trusted_proxies(prefix: str, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", requests="1/minute")],
            key_prefix=prefix,
            trusted_proxies=["10.0.0.0/24"],
        )
    )
    # behind the trusted proxy each forwarded client has its own budget
    assert await codes(limited, 2, peer="10.0.0.9", headers={"x-forwarded-for": "1.1.1.1"}) == [
        200,
        429,
    ]
    assert await codes(limited, 1, peer="10.0.0.9", headers={"x-forwarded-for": "2.2.2.2"}) == [200]
    # a forged hop in front of the real client is ignored (read right to left)
    forged = {"x-forwarded-for": "2.2.2.2, 3.3.3.3"}
    assert await codes(limited, 1, peer="10.0.0.9", headers=forged) == [200]
    # an untrusted peer cannot choose its address with the header
    untrusted = {"x-forwarded-for": "4.4.4.4"}
    assert await codes(limited, 2, peer="192.0.2.7", headers=untrusted) == [200, 429]
    assert await codes(limited, 1, peer="192.0.2.7", headers={"x-forwarded-for": "5.5.5.5"}) == [
        429
    ]


async def test_forwarded_for_joins_every_field_line(prefix: str, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", requests="1/minute")],
            key_prefix=prefix,
            trusted_proxies=["10.0.0.0/24"],
        )
    )
    # the client forges a first line; the trusted proxy adds its own line naming the real
    # client: one list (RFC 9110 section 5.3), read right to left, so one budget
    statuses = []
    for n in range(3):
        headers = [("x-forwarded-for", f"198.51.100.{n}"), ("x-forwarded-for", "203.0.113.9")]
        async with client(limited, "10.0.0.9") as http:
            statuses.append((await http.get("/ping", headers=headers)).status_code)
    assert statuses == [200, 429, 429]


async def test_client_type_header_needs_trusted_peers() -> None:
    tiers = [Tier("agent", requests="3/minute"), Tier("human", requests="1/minute")]
    with pytest.raises(ConfigurationError, match="client_type_trusted_from") as refused:
        RateLimitMiddleware(
            Upstream().app(), tiers=tiers, default_tier="human", client_type_header="X-Client-Type"
        )
    assert "IP addresses or CIDRs" in str(refused.value)


async def test_tier_names_are_case_insensitive(prefix: str, closing: Keep) -> None:
    tiers = [Tier("Agent", requests="3/minute"), Tier("human", requests="1/minute")]
    with pytest.raises(ConfigurationError, match="share a name"):
        RateLimitMiddleware(Upstream().app(), tiers=[*tiers, Tier("HUMAN")], default_tier="human")
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=tiers,
            default_tier="HUMAN",
            key_prefix=prefix,
            client_type_header="X-Client-Type",
            client_type_trusted_from=["10.0.0.0/8"],
            client_type_tiers=["AGENT", "Human"],
        )
    )
    # a principal whose tier claim says AGENT gets the Agent tier, not the default
    app = SetPrincipal(limited)
    claimed = {"x-test-principal": "bot-1:AGENT"}
    assert await codes(app, 4, peer="192.0.2.1", headers=claimed) == [200, 200, 200, 429]
    # HUMAN and human from the gateway are one tier and one budget
    assert await codes(limited, 1, peer="10.1.2.3", headers={"x-client-type": "HUMAN"}) == [200]
    assert await codes(limited, 1, peer="10.1.2.3", headers={"x-client-type": "human"}) == [429]


async def test_client_type_header_only_when_configured(prefix: str, closing: Keep) -> None:
    tiers = [Tier("agent", requests="3/minute"), Tier("human", requests="1/minute")]
    agent = {"x-client-type": "agent"}
    ignoring = closing(
        RateLimitMiddleware(
            Upstream().app(), tiers=tiers, default_tier="human", key_prefix=prefix + "a:"
        )
    )
    assert await codes(ignoring, 3, peer="192.0.2.1", headers=agent) == [200, 429, 429]

    trusting = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=tiers,
            default_tier="human",
            key_prefix=prefix + "b:",
            client_type_header="X-Client-Type",
            client_type_trusted_from=["10.0.0.0/8"],
        )
    )
    # from the trusted gateway the header picks the tier ...
    assert await codes(trusting, 4, peer="10.1.2.3", headers=agent) == [200, 200, 200, 429]
    # the value is case-insensitive, and it shares the one agent budget of that address
    assert await codes(trusting, 1, peer="10.1.2.3", headers={"x-client-type": "AGENT"}) == [429]
    # ... from anyone else it is ignored
    assert await codes(trusting, 2, peer="192.0.2.2", headers=agent) == [200, 429]


async def test_fail_open_passes_with_one_log_line(
    caplog: pytest.LogCaptureFixture, closing: Keep, dead_port: int
) -> None:
    dead = f"redis://127.0.0.1:{dead_port}/0"  # nothing listens there
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(), tiers=[Tier("t", requests="1/minute")], store=dead, timeout=0.3
        )
    )
    caplog.set_level(logging.WARNING, "aimiddleware.ratelimit")
    started = time.monotonic()
    async with client(limited) as http:
        response = await http.get("/ping")
    assert time.monotonic() - started < 0.3 + 0.5
    assert response.status_code == 200
    assert "ratelimit" not in response.headers
    lines = [r for r in caplog.records if r.name == "aimiddleware.ratelimit"]
    assert len(lines) == 1
    assert "failing open" in lines[0].getMessage()
    assert dead not in lines[0].getMessage()


async def test_fail_closed_answers_503_json(
    caplog: pytest.LogCaptureFixture, closing: Keep, dead_port: int
) -> None:
    dead = f"redis://:s3cret@127.0.0.1:{dead_port}/0"
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", requests="1/minute")],
            store=dead,
            timeout=0.3,
            on_store_error="closed",
        )
    )
    caplog.set_level(logging.WARNING, "aimiddleware.ratelimit")
    async with client(limited) as http:
        response = await http.get("/ping")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "rate_limiter_unavailable"
    lines = [r.getMessage() for r in caplog.records if r.name == "aimiddleware.ratelimit"]
    assert len(lines) == 1
    assert "failing closed" in lines[0]
    assert "s3cret" not in lines[0]
    assert "s3cret" not in repr(limited)


@pytest.mark.redis
async def test_paused_redis_fails_within_the_timeout(redis_server: Any, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", requests="5/minute")],
            store=redis_server.url,
            timeout=0.3,
            on_store_error="closed",
        )
    )
    redis_server.pause()
    try:
        started = time.monotonic()
        async with client(limited) as http:
            response = await http.get("/ping")
        assert time.monotonic() - started < 0.3 + 0.5
    finally:
        redis_server.resume()
    assert response.status_code == 503


@pytest.mark.parametrize(
    "options",
    [
        {"tiers": []},
        {"tiers": [Tier("a"), Tier("b")]},  # no default among several
        {"tiers": [Tier("a")], "default_tier": "zzz"},
        {"tiers": [Tier("a")], "strategy": "leaky"},
        {"tiers": [Tier("a")], "store": "mongodb://x"},
        {"tiers": [Tier("a")], "on_store_error": "maybe"},
        {"tiers": [Tier("a")], "trusted_proxies": ["not-an-ip"]},
        {"tiers": [Tier("a")], "client_type_tiers": ["ghost"]},
        {"tiers": [Tier("a")], "timeout": 0},
        {"tiers": [Tier("a")], "key_prefix": "{x}"},
        {"tiers": [Tier("a")], "key_by": "team"},
        {"tiers": [Tier("a")], "client_type_header": "X-Client-Type"},  # trusted from nobody
    ],
)
def test_bad_configuration_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RateLimitMiddleware(Upstream().app(), **options)


@pytest.mark.parametrize(
    "spec", [{"requests": "ten per minute"}, {"requests": "0/minute"}, {"concurrency": 0}]
)
def test_bad_tier_is_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Tier("t", **spec)


def test_import_works_without_the_limits_package() -> None:
    code = (
        "import sys; sys.modules['limits'] = None\n"
        "import aimiddleware\n"
        "try:\n"
        "    aimiddleware.RateLimitMiddleware\n"
        "except ImportError:\n"
        "    print('lazy')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lazy"


async def test_websocket_and_exempt_paths_pass_through(prefix: str, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", requests="1/minute")],
            key_prefix=prefix,
            exempt_paths=["/ping"],
        )
    )
    assert await codes(limited, 3, peer="192.0.2.9") == [200, 200, 200]
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    other = closing(RateLimitMiddleware(inner, tiers=[Tier("t", requests="1/minute")]))
    await other({"type": "lifespan"}, None, None)
    assert seen == ["lifespan"]
