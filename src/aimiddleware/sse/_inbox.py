"""One reader of the server's ``receive``, shared by the app and the disconnect watch.

Two coroutines awaiting the server's ``receive`` at once is undefined behaviour in ASGI (uvicorn
wakes both on one event and hands the body to either). :class:`Inbox` keeps exactly one read in
flight: while nothing watches, the app reads straight through (no task, no cost); once a stream
is watched, a read runs in a task whose result is either queued for the app (``http.request``)
or remembered for everyone (``http.disconnect``, which every later ``receive`` call then gets).
"""

from __future__ import annotations

import asyncio
from collections import deque

from ..context import Message, Receive

__all__ = ["Inbox"]

_DISCONNECT: Message = {"type": "http.disconnect"}


class Inbox:
    """The ``receive`` handed to the app, plus a disconnect watch that can be switched on.

    A subclass learns of the disconnect in :meth:`peer_gone` (the SSE exchange is one: one
    object per request rather than two).

    >>> inbox = Inbox(receive)  # doctest: +SKIP
    >>> await app(scope, inbox.receive, send)  # doctest: +SKIP
    """

    __slots__ = ("_direct", "_queue", "_read", "_receive", "_watching", "gone")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        # http.request messages read on the app's behalf (created when the first one is)
        self._queue: deque[Message] | None = None
        self._read: asyncio.Future[Message] | None = None
        self._direct = 0  # app reads going straight to the server
        self._watching = False
        self.gone = False

    async def receive(self) -> Message:
        """The app's ``receive``: never two reads of the server at once."""
        if self._queue:
            return self._queue.popleft()
        if self.gone:
            return dict(_DISCONNECT)
        if self._read is None and not self._watching:
            self._direct += 1
            try:
                message = await self._receive()
            except BaseException:
                self._direct -= 1
                self._resume_watch()
                raise
            self._direct -= 1
            if message["type"] == "http.disconnect":
                self._disconnected()
            else:
                self._resume_watch()  # a watch switched on meanwhile takes over from here
            return message
        while not self._queue and not self._is_gone():
            read = self._read if self._read is not None else self._start_read()
            if not read.done():
                # shielded: an app that cancels its own receive (Request.is_disconnected does)
                # must not cancel the read the watch shares; its result is kept for the next call
                await asyncio.shield(read)
            self._take(read)  # the done callback may not have run yet
        return self._queue.popleft() if self._queue else dict(_DISCONNECT)

    def _is_gone(self) -> bool:
        return self.gone

    def watch(self) -> None:
        """Start watching for ``http.disconnect`` (called once the stream's headers went out)."""
        self._watching = True
        self._resume_watch()

    def peer_gone(self) -> None:
        """The client disconnected (called once)."""

    async def stop_watching(self) -> None:
        """Stop watching and drop the read in flight (the response is over)."""
        self._watching = False
        read = self._read
        if read is not None and not read.done():
            read.cancel()
            await asyncio.wait((read,))

    def _resume_watch(self) -> None:
        # a watch switched on while the app was reading directly takes over once that read ends
        if self._watching and self._direct == 0 and self._read is None and not self.gone:
            self._start_read()

    def _start_read(self) -> asyncio.Future[Message]:
        read = asyncio.ensure_future(self._receive())
        read.add_done_callback(self._take)
        self._read = read
        return read

    def _take(self, read: asyncio.Future[Message]) -> None:
        if self._read is not read:
            return  # already taken
        self._read = None
        if read.cancelled():
            return
        if read.exception() is not None:
            # the server's receive failed: treat the peer as gone rather than hang the app
            self._disconnected()
            return
        message = read.result()
        if message["type"] == "http.disconnect":
            self._disconnected()
            return
        if self._queue is None:
            self._queue = deque()
        self._queue.append(message)
        self._resume_watch()

    def _disconnected(self) -> None:
        if not self.gone:
            self.gone = True
            self.peer_gone()
