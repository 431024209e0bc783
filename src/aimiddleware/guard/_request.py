"""One guarded request: counts and times its body, answers the refusal, drops what follows."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

from ..context import Message, Receive, Scope, Send
from ._clock import Watch
from ._refusal import refuse

if TYPE_CHECKING:
    from ._options import GuardOptions
    from .middleware import RequestGuardMiddleware

__all__ = ["GuardedRequest"]

_DISCONNECT: Final = {"type": "http.disconnect"}


class GuardedRequest:
    """The ``receive`` and ``send`` the app gets for one request with a body to watch."""

    __slots__ = (
        "_config",
        "_expired",
        "_guard",
        "_limit",
        "_pending",
        "_reading",
        "_receive",
        "_scope",
        "_send",
        "_size",
        "_task",
        "_watch",
        "answered",
        "deadline",
        "done",
        "refused",
        "started",
    )

    def __init__(
        self,
        guard: RequestGuardMiddleware,
        config: GuardOptions,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int | None,
        first: Message | None = None,
        deadline: float = 0.0,
    ) -> None:
        self._guard = guard  # for its clock, shared by the requests of one event loop
        self._config = config
        self._scope = scope
        self._receive = receive
        self._send = send
        self._limit = limit
        self._size = 0
        self._watch: Watch | None = None
        self._task: asyncio.Task[object] | None = None
        self._expired = self._reading = False
        self.deadline = deadline
        self._pending = first  # read by the guard already, not yet given to the app
        self.done = False  # the body is complete: later reads only wait for a disconnect
        self.refused = False  # the app is shown a disconnect from now on
        self.answered = False  # the refusal went out: whatever the app sends is dropped
        self.started = False
        if deadline:  # the guard's first read started the clock: keep watching it
            self._watch = guard.watch()
            self._watch.add(self)

    async def receive(self) -> Message:
        if self.done:
            return dict(_DISCONNECT) if self.refused else await self._receive()
        message = self._pending
        if message is not None:
            self._pending = None
        else:
            message = await self._read()
            if message is None:
                return dict(_DISCONNECT)
        if message["type"] != "http.request":
            self.close()
            return message
        limit = self._limit
        if limit is not None:
            body = message.get("body", b"")
            if body:
                self._size += len(body)
                if self._size > limit:
                    await self._refuse(413, limit)
                    return dict(_DISCONNECT)
        if not message.get("more_body", False):
            self.close()
        return message

    async def _read(self) -> Message | None:
        """The next message from the server, or None once the deadline refused the body."""
        timeout = self._config.body_timeout
        if timeout is None:
            return await self._receive()
        if self._watch is None:
            # the clock starts at the first read: what an app does before it is its own time
            self._watch = watch = self._guard.watch()
            self.deadline = time.monotonic() + timeout
            watch.add(self)
        elif self._expired:
            await self._refuse(408, timeout)
            return None
        # the app may read from another task than the one that read before
        self._task = asyncio.current_task()
        self._reading = True
        try:
            return await self._receive()
        except asyncio.CancelledError:
            # ours only if nobody else cancelled the task as well
            if self._expired and self._task is not None and self._task.uncancel() == 0:
                await self._refuse(408, timeout)
                return None
            raise
        finally:
            self._reading = False

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    def close(self) -> None:
        """The body is complete, refused, or no longer read: stop watching the clock."""
        self.done = True
        if self._watch is not None:
            self._watch.reads.discard(self)

    def expire(self) -> None:
        """The deadline passed (called by the watch)."""
        self._expired = True
        if self._reading and self._task is not None:
            # interrupt the read in progress; a later one is refused at once
            self._task.cancel()

    async def _refuse(self, status: int, limit: float) -> None:
        self.refused = True
        self.close()
        if not self.started:  # else the app answered without the whole body: that stands
            self.answered = self.started = True
            await refuse(self._send, self._scope, status, limit, self._config.problem_type_base)
