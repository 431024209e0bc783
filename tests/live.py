"""Run an ASGI app under a real uvicorn on a free loopback port, in a thread of the test process.

The test talks to it over a real socket (httpx, the openai SDK); :class:`Gate` lets a test
release the app from the test's thread, so "the first event arrived before the second was
produced" is shown by ordering, not by sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .servers import ThreadedServer


class Gate:
    """An event the app awaits on the server's loop and the test opens from its own thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._opened = threading.Event()

    async def wait(self) -> None:
        if self._event is None:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
            if self._opened.is_set():
                self._event.set()
        await self._event.wait()

    def open(self) -> None:
        self._opened.set()
        if self._loop is not None and self._event is not None:
            self._loop.call_soon_threadsafe(self._event.set)


class Flag:
    """A thread-safe fact the app records and the test reads (``produced``, ``cancelled`` ...)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


async def lifespan(receive: Any, send: Any) -> None:
    """The lifespan protocol for raw test apps (the server runs it with lifespan on)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` on ``http://127.0.0.1:<free port>`` until the block ends; yields the URL."""
    with ThreadedServer(app) as server:
        yield server.url


def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it is true (what a server does in its own thread, such as
    exporting a span or freeing an instance); whether it became true within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def wait_for(condition: Callable[[], object], timeout: float = 20.0) -> None:
    """:func:`wait_until`, failing the test when ``condition`` is still false."""
    if not wait_until(condition, timeout):
        raise AssertionError("condition not met in time")
