"""One guarded request: counts and times its body, answers the refusal, drops what follows."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from .._asgi import Message, Receive, Scope, Send
from ._refusal import refuse

if TYPE_CHECKING:
    from .middleware import RequestGuardMiddleware

__all__ = ["GuardedRequest"]

_DISCONNECT: Final = {"type": "http.disconnect"}


class GuardedRequest:
    """The ``receive`` and ``send`` the app gets for one request with a body to watch."""

    __slots__ = (
        "_deadline",
        "_guard",
        "_limit",
        "_receive",
        "_scope",
        "_send",
        "_size",
        "answered",
        "done",
        "refused",
        "started",
    )

    def __init__(
        self,
        guard: RequestGuardMiddleware,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int | None,
    ) -> None:
        self._guard = guard
        self._scope = scope
        self._receive = receive
        self._send = send
        self._limit = limit
        self._size = 0
        self._deadline: float | None = None
        self.done = False  # the body is complete: later reads only wait for a disconnect
        self.refused = False  # the app is shown a disconnect from now on
        self.answered = False  # the refusal went out: whatever the app sends is dropped
        self.started = False

    async def receive(self) -> Message:
        if self.refused:
            return dict(_DISCONNECT)
        if self.done:
            return await self._receive()
        timeout = self._guard.body_timeout
        if timeout is None:
            message = await self._receive()
        else:
            if self._deadline is None:
                self._deadline = asyncio.get_running_loop().time() + timeout
            try:
                async with asyncio.timeout_at(self._deadline):
                    message = await self._receive()
            except TimeoutError:
                await self._refuse(408, timeout)
                return dict(_DISCONNECT)
        if message["type"] != "http.request":
            self.done = True
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
            self.done = True
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def _refuse(self, status: int, limit: float) -> None:
        self.refused = True
        if self.started:
            return  # the app answered without the whole body: its response stands
        self.answered = self.started = True
        await refuse(self._send, self._scope, status, limit, self._guard.problem_type_base)
