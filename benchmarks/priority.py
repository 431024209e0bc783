"""A person's time to first token behind a queue of agent streams, with and without priority.

    python -m benchmarks.priority --rounds 3 --agent-tokens 64

The reference app (one model instance, the real SmolLM2) under uvicorn on loopback, its tiers
told apart by a trusted client-type header. Each round starts 8 agent streams (one generates,
seven wait for the instance), waits until /health shows them waiting, then sends one human
request and measures its time to first token (request sent to first content delta). The same
rounds run with ``priority`` on (people weigh 4, agents 1: the default) and off (first come
first served), interleaved, each on its own server. With priority the person waits for the one
agent stream already generating; without it, for all eight.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from reference_app import Settings, create_app
from testkit.servers import ThreadedServer, bound_socket, port_of

from .machine import describe

MODEL_ID = "SmolLM2-135M-Instruct"
RESULTS = Path(__file__).parent / "results"
AGENTS = 8
# the end-of-text and end-of-turn tokens banned: every agent stream is exactly --agent-tokens long
NO_END = {"0": -100, "2": -100}
UNREACHED = {
    "human_requests": "1000000/minute",
    "human_tokens": "1000000000/minute",
    "human_concurrency": 1000,
    "agent_requests": "1000000/minute",
    "agent_tokens": "1000000000/minute",
    "agent_concurrency": 1000,
}


@contextlib.contextmanager
def reference(priority: bool) -> Iterator[str]:
    sock = bound_socket()
    settings = Settings(
        auth=False,
        instances=1,
        port=port_of(sock),
        priority=priority,
        client_type_header="x-client-type",
        client_type_trusted_from=["127.0.0.1"],
        **UNREACHED,
    )
    with ThreadedServer(create_app(settings), sock=sock) as server:
        deadline = time.monotonic() + 120
        while httpx.get(f"{server.url}/health", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the reference app did not load its model")
            time.sleep(0.1)
        yield server.url


def chat(tokens: int) -> dict[str, Any]:
    return {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": "Count from one to a thousand."}],
        "max_tokens": tokens,
        "logit_bias": NO_END,
        "stream": True,
    }


async def _first_token(http: httpx.AsyncClient, tier: str, tokens: int) -> float:
    """Seconds from sending to the first content delta; the stream is then read to its end."""
    started = time.perf_counter()
    first: float | None = None
    body = chat(tokens)
    async with http.stream(
        "POST", "/v1/chat/completions", json=body, headers={"x-client-type": tier}
    ) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            content = line.startswith("data: {") and '"content":"' in line
            if first is None and content and '"content":""' not in line:
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError(f"the {tier} stream carried no content")
    return first


async def _waiting(http: httpx.AsyncClient, count: int) -> None:
    while (await http.get("/health")).json()["waiting_by_tier"].get("agent", 0) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # the server's counts: nothing to wait on but its answers


async def one_round(url: str, agent_tokens: int) -> float:
    """The human request's time to first token behind ``AGENTS`` agent streams, in ms."""
    limits = httpx.Limits(max_connections=AGENTS + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        agents = [
            asyncio.ensure_future(_first_token(http, "agent", agent_tokens)) for _ in range(AGENTS)
        ]
        await asyncio.wait_for(_waiting(http, AGENTS - 1), 120)
        human = await _first_token(http, "human", 8)
        await asyncio.gather(*agents)
    return human * 1000


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.priority",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agent-tokens", type=int, default=64, help="tokens per agent stream")
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    args = parser.parse_args(argv)

    samples: dict[str, list[float]] = {"priority": [], "fifo": []}
    with reference(True) as with_priority, reference(False) as without:
        urls = {"priority": with_priority, "fifo": without}
        for url in urls.values():  # warm up each once
            asyncio.run(_warm(url))
        for round_no in range(1, args.rounds + 1):
            for name, url in urls.items():
                ttft = asyncio.run(one_round(url, args.agent_tokens))
                samples[name].append(ttft)
                print(f"round {round_no} {name:8} human TTFT {ttft:8.1f} ms", flush=True)
    summary = {
        name: {"ttft_p50_ms": statistics.median(values), "ttft_ms": values}
        for name, values in samples.items()
    }
    speedup = summary["fifo"]["ttft_p50_ms"] / summary["priority"]["ttft_p50_ms"]
    print(f"\nhuman TTFT behind {AGENTS} agent streams of {args.agent_tokens} tokens (p50):")
    for name, row in summary.items():
        print(f"  {name:8} {row['ttft_p50_ms']:9.1f} ms")
    print(f"  priority is {speedup:.1f}x sooner")
    report: dict[str, object] = {
        "kind": "priority",
        "machine": describe(),
        "settings": {"rounds": args.rounds, "agent_tokens": args.agent_tokens, "agents": AGENTS},
        "summary": summary,
        "speedup": speedup,
    }
    out = args.out or RESULTS / f"priority-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written {out}")
    return report


async def _warm(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await _first_token(http, "agent", 4)


if __name__ == "__main__":
    main()
