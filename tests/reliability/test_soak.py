"""Soak: mixed streaming and non-streaming traffic through the full stack for a while.

Proves: RSS growth under 10 % after warm-up (live memory, see ``live_rss_bytes``), p99 latency
of the second half within twice that of the first half (stable, not creeping), and zero errors
outside the documented ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from .conftest import Reporter, scale
from .stack import Stack, chat, serve_stack
from .test_disconnect_storm import live_rss_bytes, rss_bytes

pytestmark = [pytest.mark.model, pytest.mark.e2e]

DURATION = scale(30.0, 600.0)
WARMUP = DURATION * 0.2
CLIENTS = 4


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serve_stack(
        tmp_path_factory.mktemp("soak"),
        agent_requests="1000000/minute",
        agent_tokens="1000000000/minute",
        agent_concurrency=CLIENTS * 2,
    ) as running:
        yield running


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def client_loop(
    url: str, token: str, index: int, stop_at: float, samples: list[tuple[float, float, int]]
) -> None:
    headers = {"authorization": f"Bearer {token}"}
    count = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        while time.monotonic() < stop_at:
            count += 1
            keyed = {"idempotency-key": f"soak-{index}-{count}"} if count % 4 == 0 else {}
            started = time.monotonic()
            if count % 2:
                async with client.stream(
                    "POST",
                    "/v1/chat/completions",
                    json=chat(max_tokens=4, stream=True),
                    headers=keyed,
                ) as response:
                    body = b"".join([chunk async for chunk in response.aiter_bytes()])
                    status = response.status_code
                    if b'"error"' in body:
                        status = 599  # an error inside a 200 stream counts as an error
            else:
                response = await client.post(
                    "/v1/chat/completions", json=chat(max_tokens=4), headers=keyed
                )
                status = response.status_code
            samples.append((started, time.monotonic() - started, status))


def test_soak_mixed_traffic_is_stable(stack: Stack, report: Reporter) -> None:
    token = stack.token("--scope", "chat", "--tier", "agent")
    samples: list[tuple[float, float, int]] = []
    rss: list[tuple[float, int]] = []
    live: list[int] = []  # after warm-up and at the end
    begin = time.monotonic()

    async def run() -> None:
        stop_at = begin + DURATION
        clients = [
            asyncio.create_task(client_loop(stack.url, token, i, stop_at, samples))
            for i in range(CLIENTS)
        ]
        while time.monotonic() < stop_at:
            # the recording is scanned for secrets as it goes and dropped, so that what grows
            # is the server's memory, not the spans and log lines kept for the scan
            stack.scan_and_forget()
            rss.append((time.monotonic() - begin, rss_bytes()))
            if not live and time.monotonic() - begin >= WARMUP:
                live.append(live_rss_bytes())
            await asyncio.sleep(min(5.0, DURATION / 10))
        await asyncio.gather(*clients)

    asyncio.run(run())
    stack.scan_and_forget()
    rss.append((time.monotonic() - begin, rss_bytes()))
    live.append(live_rss_bytes())
    after_warmup = [(t - begin, d, s) for t, d, s in samples if t - begin >= WARMUP]
    middle = WARMUP + (DURATION - WARMUP) / 2
    first = [d for t, d, _ in after_warmup if t < middle]
    second = [d for t, d, _ in after_warmup if t >= middle]
    errors = [s for _, _, s in samples if s != 200]
    baseline, end = live
    growth = (end - baseline) / baseline
    report("duration", DURATION, "s")
    report("requests", len(samples))
    report("errors", len(errors))
    report("p99 first half", round(p99(first), 3), "s")
    report("p99 second half", round(p99(second), 3), "s")
    report("RSS after warm-up (live)", baseline // 2**20, "MiB")
    report("RSS at the end (live)", end // 2**20, "MiB")
    report("RSS growth after warm-up", round(growth * 100, 2), "%")
    report("RSS samples (plain)", " ".join(str(v // 2**20) for _, v in rss), "MiB")
    assert errors == []
    assert growth < 0.10
    assert p99(second) < 2 * p99(first) + 0.05
    assert stack.health()["generations_active"] == 0
    assert stack.leaks() == []
