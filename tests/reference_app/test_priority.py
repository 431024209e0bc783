"""Priority between tiers in the line for a model instance: people before agents that came
earlier, agents never starved, first come first served within a tier, and /health's counts.

The line is driven with real asyncio futures (its order depends on arrivals and releases
only), then through the real server with the real model."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import anyio
import httpx
import pytest

from reference_app import Settings
from reference_app.waitline import WaitLine

from ..servers import ThreadedServer
from .conftest import LONG_SCHEMA, MODEL

pytestmark = pytest.mark.anyio

Factory = Callable[..., AbstractContextManager[ThreadedServer]]

WEIGHTS = {"human": 4.0, "agent": 1.0}


def served_order(line: WaitLine[str], arrivals: list[str], grants: int) -> list[str]:
    """Who gets each of ``grants`` instances, in order (``arrivals`` joined first, in order)."""
    places = [(name, line.join(name.split("-")[0])) for name in arrivals]
    order = []
    for _ in range(grants):
        line.grant("instance")
        for name, place in places:
            if place.done() and name not in order:
                order.append(name)
    return order


async def test_a_person_is_served_before_agents_that_came_earlier() -> None:
    line: WaitLine[str] = WaitLine(WEIGHTS)
    arrivals = [f"agent-{i}" for i in range(8)] + ["human-0"]
    assert served_order(line, arrivals, 2) == ["human-0", "agent-0"]
    assert line.waiting() == {"agent": 7}


async def test_agents_are_not_starved_by_a_stream_of_people() -> None:
    line: WaitLine[str] = WaitLine(WEIGHTS)
    arrivals = [f"agent-{i}" for i in range(3)] + [f"human-{i}" for i in range(12)]
    order = served_order(line, arrivals, 15)
    # four people to one agent, as the weights say (the first agent after the first person: it
    # came earlier); within a tier, first come first served
    tiers = [name.split("-")[0] for name in order[:12]]
    assert tiers == ["human", "agent", *["human"] * 4, "agent", *["human"] * 4, "agent"]
    assert [name for name in order if name.startswith("agent")] == ["agent-0", "agent-1", "agent-2"]
    humans = [name for name in order if name.startswith("human")]
    assert humans == [f"human-{i}" for i in range(12)]


async def test_a_tier_that_was_idle_banks_no_credit() -> None:
    line: WaitLine[str] = WaitLine(WEIGHTS)
    # a long run of people alone, then agents arrive: they are not owed the idle time
    people = [line.join("human") for _ in range(20)]
    for _ in range(20):
        line.grant("instance")
    assert all(place.done() for place in people)
    arrivals = [f"agent-{i}" for i in range(2)] + [f"human-{i}" for i in range(8)]
    order = served_order(line, arrivals, 10)
    assert [name.split("-")[0] for name in order[:5]].count("agent") == 1


async def test_priority_off_is_one_first_come_first_served_line() -> None:
    line: WaitLine[str] = WaitLine(None)
    arrivals = ["agent-0", "human-0", "agent-1", "human-1"]
    assert served_order(line, arrivals, 4) == arrivals
    # the counts still say who waits
    places = [line.join(tier) for tier in ("agent", "human", "human")]
    assert line.waiting() == {"agent": 1, "human": 2}
    assert len(line) == 3
    del places


async def test_a_waiter_that_gave_up_is_skipped_and_counted_out() -> None:
    line: WaitLine[str] = WaitLine(WEIGHTS)
    gone = line.join("human")
    stays = line.join("agent")
    gone.cancel()
    assert line.waiting() == {"agent": 1}
    assert line.grant("instance") == "agent"
    assert stays.result() == "instance"
    assert line.grant("instance") is None  # nobody left: the instance stays idle


def test_weights_must_be_positive() -> None:
    with pytest.raises(ValueError, match="human"):
        WaitLine({"human": 0.0})


def test_the_settings_weigh_people_four_times_agents_by_default() -> None:
    settings = Settings(auth=False)
    assert settings.priority is True
    assert (settings.human_weight, settings.agent_weight) == (4.0, 1.0)


# -- the real server --------------------------------------------------------------------------


async def _poll_health(url: str, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as http:
        with anyio.fail_after(60):
            while True:
                health = (await http.get(f"{url}/health")).json()
                if condition(health):
                    return health  # type: ignore[no-any-return]
                await anyio.sleep(0.02)  # another thread's server: nothing to wait on but it


@pytest.mark.model
@pytest.mark.e2e
async def test_the_server_serves_a_person_before_agents_that_queued_earlier(
    reference_factory: Factory,
) -> None:
    tiers = {
        "client_type_header": "x-client-type",
        "client_type_trusted_from": ["127.0.0.1"],
        "agent_requests": "1000000/minute",
        "agent_tokens": "1000000000/minute",
        "agent_concurrency": 1000,
    }
    with reference_factory(instances=1, **tiers) as server:
        started: list[str] = []
        short = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Count."}],
            "max_tokens": 2,
            "stream": True,
        }
        long = {**short, "response_format": LONG_SCHEMA, "max_tokens": 1900}
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            release = anyio.Event()

            async def run(name: str, body: dict[str, Any]) -> None:
                headers = {"x-client-type": name.split("-")[0]}
                async with http.stream(
                    "POST", "/v1/chat/completions", json=body, headers=headers
                ) as r:
                    lines = r.aiter_lines()
                    await anext(lines)
                    started.append(name)
                    if name == "agent-first":
                        await release.wait()  # then hang up: the line moves on
                        return
                    async for _ in lines:
                        pass

            async with anyio.create_task_group() as tg:
                tg.start_soon(run, "agent-first", long)
                await _poll_health(server.url, lambda h: h["generations_active"] == 1)
                queue = ["agent-1", "agent-2", "agent-3", "human-1"]
                for count, name in enumerate(queue, start=1):
                    tg.start_soon(run, name, short)
                    # the next one is sent only once this one stands in the line
                    await _poll_health(server.url, lambda h, n=count: h["waiting"] >= n)
                health = await _poll_health(server.url, lambda h: h["waiting"] == 4)
                assert health["waiting_by_tier"] == {"agent": 3, "human": 1}
                release.set()
        assert started == ["agent-first", "human-1", "agent-1", "agent-2", "agent-3"]
