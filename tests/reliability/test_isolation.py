"""Tenant isolation and secrets, on one shared Redis.

Tenant A and tenant B (two principals, two tokens) use the same Idempotency-Key and the same
tier. A can never read or replay B's record, never exhaust B's limits, never observe B's
numbers; and no token appears in logs, span attributes, metrics or the stored records.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from ..servers import RedisServer, redis_binary
from .conftest import Reporter, scale
from .stack import Stack, chat, serve_stack

pytestmark = [pytest.mark.model, pytest.mark.e2e, pytest.mark.redis]

LIMIT = scale(5, 20)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Stack]:
    with serve_stack(
        tmp_path_factory.mktemp("isolation"),
        redis_url=redis_server.url,
        agent_requests=f"{LIMIT}/minute",
    ) as running:
        yield running


def remaining_requests(response: httpx.Response) -> int:
    found = re.search(r'"requests";r=(\d+)', response.headers.get("ratelimit", ""))
    assert found is not None, response.headers
    return int(found.group(1))


def store_dump(redis: RedisServer) -> bytes:
    """Every key and value in the store, as bytes, for the secrets scan."""
    cli = redis_binary("redis-cli")
    keys = subprocess.run(
        [cli, "-p", str(redis.port), "--scan"], capture_output=True, check=True, timeout=30
    ).stdout.split()
    out = bytearray()
    for key in keys:
        out += key + b"\n"
        kind = subprocess.run(
            [cli, "-p", str(redis.port), "type", key], capture_output=True, timeout=30
        ).stdout.strip()
        command = {b"string": "get", b"hash": "hgetall", b"list": "lrange", b"zset": "zrange"}
        if kind in command:
            extra = ["0", "-1"] if kind in (b"list", b"zset") else []
            out += subprocess.run(
                [cli, "-p", str(redis.port), command[kind], key, *extra],
                capture_output=True,
                timeout=30,
            ).stdout
    return bytes(out)


def test_tenants_never_see_each_others_records_or_limits(
    stack: Stack, redis_server: RedisServer, report: Reporter
) -> None:
    token_a = stack.token(
        "--scope", "chat models:read", "--tier", "agent", "--client-id", "tenant-a"
    )
    token_b = stack.token(
        "--scope", "chat models:read", "--tier", "agent", "--client-id", "tenant-b"
    )
    a = httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {token_a}"}, timeout=30)
    b = httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {token_b}"}, timeout=30)
    with a, b:
        key = {"idempotency-key": "shared-key-1"}
        first_b = b.post("/v1/chat/completions", json=chat(max_tokens=2), headers=key)
        assert first_b.status_code == 200
        # A with B's key and B's exact body: a fresh execution, never B's record
        first_a = a.post("/v1/chat/completions", json=chat(max_tokens=2), headers=key)
        assert first_a.status_code == 200
        assert first_a.headers.get("idempotent-replayed") is None
        assert first_a.json()["id"] != first_b.json()["id"]
        # A with a key only B used, and another body: a fresh run, not B's 422 mismatch
        # (which would tell A that B used the key)
        only_b = {"idempotency-key": "only-b-used-this"}
        assert b.post("/v1/chat/completions", json=chat(max_tokens=2), headers=only_b).is_success
        other = a.post("/v1/chat/completions", json=chat(max_tokens=3), headers=only_b)
        report("A reusing B's key with another body", other.status_code)
        assert other.status_code == 200
        assert other.headers.get("idempotent-replayed") is None
        # B still replays its own record
        again_b = b.post("/v1/chat/completions", json=chat(max_tokens=2), headers=key)
        assert again_b.headers.get("idempotent-replayed") == "true"
        assert again_b.json()["id"] == first_b.json()["id"]

        # A exhausts its request limit; B's allowance is untouched and B never sees A's count
        b_before = remaining_requests(b.get("/v1/models"))
        statuses = [a.get("/v1/models").status_code for _ in range(LIMIT + 2)]
        report("A's requests until 429", statuses.index(429) if 429 in statuses else None)
        assert 429 in statuses
        b_after = b.get("/v1/models")
        assert b_after.status_code == 200
        report("B's remaining requests before A exhausted its own", b_before)
        report("B's remaining requests after", remaining_requests(b_after))
        assert remaining_requests(b_after) == b_before - 1

    stored = store_dump(redis_server)
    report("bytes scanned in the store", len(stored))
    for token in (token_a, token_b):
        assert token.encode() not in stored
        # nor the signature part alone, which is what would let a replayer forge nothing else
        assert token.rsplit(".", 1)[-1].encode() not in stored
    assert stack.leaks() == []
