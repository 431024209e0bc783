"""Passing a claimed request's response to its client, who may leave before it ends."""

from __future__ import annotations

import asyncio
import enum
from typing import Final

from ..context import Continuation, Message, Receive, Scope, Send, annotate, continue_work

__all__ = ["GONE", "OPEN", "Forwarder", "Link"]

CLIENT_GONE: Final = "aimiddleware.idempotency.client_gone"
#: the name of the work that goes on once the client left (the span that reports it)
CONTINUED: Final = "idempotency.complete"


class Link(enum.Enum):
    """The client's side of a claimed request: ``OPEN`` until the client leaves (``GONE``)."""

    OPEN = "open"  # messages go to the client
    GONE = "gone"  # the client left: messages are dropped, the response is still recorded


# read on every message: module constants, not EnumType's Python-level attribute hook
OPEN, GONE = Link


async def _unset() -> Message:  # pragma: no cover (hiding_disconnect() sets the real one)
    raise RuntimeError("hiding_disconnect() was not called")


class Forwarder:
    """Sends the response on to the client and hides its leaving from the app.

    With ``on_disconnect="complete"`` the app runs to the end of its response whatever the
    client does, so that it is recorded; with ``"abort"`` the server's errors reach the app.
    """

    __slots__ = ("_abort", "_ended", "_receive", "_send", "continued", "ended", "link", "scope")

    def __init__(self, scope: Scope, send: Send, abort: bool) -> None:
        self.scope = scope
        self._send = send
        self._abort = abort
        self.link = OPEN
        self.ended = False  # the last message of the response was reached
        self._ended: asyncio.Event | None = None
        self._receive: Receive = _unset
        self.continued: Continuation | None = None  # the work after the client left

    def detach(self) -> None:
        """The client is gone: stop forwarding (recording goes on)."""
        if self.link is OPEN:
            self.link = GONE
            annotate(self.scope, CLIENT_GONE, True)
            # the app runs on to record the answer: said for whoever reports on the request
            self.continued = continue_work(self.scope, CONTINUED)

    async def forward(self, message: Message) -> None:
        """Send ``message`` to the client while it is there."""
        if self.link is GONE:
            return
        if self._abort:
            await self._send(message)
            return
        try:
            await self._send(message)
        except OSError:
            # the server reports a gone client (ASGI spec 2.4): finish and record anyway
            self.detach()

    async def end(self, message: Message) -> None:
        """Send the response's last message; a disconnect is no longer hidden after it."""
        self.ended = True
        await self.forward(message)
        if self._ended is not None:
            self._ended.set()

    def hiding_disconnect(self, receive: Receive) -> Receive:
        """A ``receive`` that keeps a client disconnect from the app until the response ends.

        The app then finishes the generation; the recorder keeps recording. Only once the
        response ended does the app hear of it: a server reports a disconnect once the body has
        ended, and an app that reacts to it (Starlette's StreamingResponse cancels itself) must
        not cut the store write short.
        """
        self._receive = receive
        return self._hiding  # a bound method: cheaper than a closure per request

    async def _hiding(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.ended:
            self.detach()
            if self._ended is None:
                self._ended = asyncio.Event()
            await self._ended.wait()
        return message
