"""The shared lease heartbeat: running executions are renewed on time, finished ones never."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from aimiddleware.idempotency._heartbeat import Heartbeats

pytestmark = pytest.mark.anyio


class Beater:
    def __init__(self) -> None:
        self.done = False
        self.beats: list[float] = []

    def beat(self) -> None:
        self.beats.append(asyncio.get_running_loop().time())


async def test_running_executions_are_renewed_every_interval_and_finished_ones_are_not() -> None:
    heartbeats = Heartbeats(0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    long, short = Beater(), Beater()
    heartbeats.add(long)
    await asyncio.sleep(0.03)
    heartbeats.add(short)
    short.done = True  # finished before its first renewal
    await asyncio.sleep(0.36)
    long.done = True
    await asyncio.sleep(0.15)
    assert short.beats == []
    assert len(long.beats) == 3
    for n, at in enumerate(long.beats, start=1):
        assert at - started == pytest.approx(0.1 * n, abs=0.05)


async def test_a_finished_execution_is_not_kept_alive_by_the_queue() -> None:
    heartbeats = Heartbeats(30.0)
    beater = Beater()
    heartbeats.add(beater)
    collected = asyncio.Event()
    weakref.finalize(beater, collected.set)
    del beater
    gc.collect()
    assert collected.is_set()


def test_a_middleware_served_from_a_new_loop_arms_its_timer_there() -> None:
    heartbeats = Heartbeats(0.05)
    first, second = Beater(), Beater()

    async def run(beater: Beater) -> None:
        heartbeats.add(beater)
        await asyncio.sleep(0.08)
        beater.done = True

    asyncio.run(run(first))
    asyncio.run(run(second))  # the first loop's timer is gone with its loop
    assert len(first.beats) == 1
    assert len(second.beats) == 1
