"""The per-request side of :class:`~aimiddleware.sse.SSEMiddleware`: one object per request."""

from __future__ import annotations

import asyncio
import logging
import math
import zlib
from typing import TYPE_CHECKING, Final

from .._asgi import get_header, is_event_stream
from .._sse import ends_event
from ..context import Message, Receive, Scope, Send, annotate
from ._headers import stream_headers
from ._inbox import Inbox

if TYPE_CHECKING:
    from ._options import SSEOptions

__all__ = ["Exchange"]

logger = logging.getLogger("aimiddleware.sse")

_FLUSH: Final[Message] = {"type": "http.response.body", "body": b"", "more_body": True}


class Exchange(Inbox):
    """One request through the SSE middleware: wrapped ``send``, the ``receive`` of its
    :class:`Inbox`, and the ticker.

    The ticker (heartbeats and the send timeout) and the disconnect watch exist only once an
    event-stream response has started; every other response costs one attribute test per message.
    """

    __slots__ = (
        "_beat",
        "_config",
        "_decoder",
        "_heartbeat",
        "_loop",
        "_scope",
        "_send",
        "_sending_since",
        "_tail",
        "_task",
        "_ticker",
        "app_running",
        "beats",
        "cancel_requested",
        "complete",
        "last",
        "outcome",
        "stream",
    )

    # set by _start, once the response is known to be a stream
    _loop: asyncio.AbstractEventLoop
    _tail: bytes
    _heartbeat: Message
    _sending_since: float | None
    _beat: asyncio.Future[None] | None
    _ticker: asyncio.Task[None] | None
    _decoder: zlib._Decompress | None
    beats: int
    last: float

    def __init__(self, config: SSEOptions, scope: Scope, receive: Receive, send: Send) -> None:
        Inbox.__init__(self, receive)
        self._config = config
        self._scope = scope
        self._send = send
        self._task = asyncio.current_task()
        self.stream = False
        self.complete = False
        self.app_running = True
        self.cancel_requested = False
        self.outcome: str | None = None
        # the stream's state is set up by _start: most responses are not streams

    # -- send --------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        if not self.stream:
            if message["type"] == "http.response.start":
                # is_event_stream without parsing every Content-Type: runs once per response
                for name, value in message.get("headers", ()):
                    if len(name) == 12 and name.lower() == b"content-type":
                        if value[:17].lower() == b"text/event-stream" and is_event_stream(
                            ((name, value),)
                        ):
                            await self._start(message)
                            return
                        break
            await self._send(message)
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self._decoder is not None:
            body = self._decoder.decompress(body)
            if not more:
                body += self._decoder.flush()
            message = {"type": "http.response.body", "body": body, "more_body": more}
        now = self._loop.time()
        if body:
            self.last = now
            self._tail = body[-3:] if len(body) >= 3 else (self._tail + body)[-3:]
        if not more:
            self.complete = True
        beat = self._beat
        if beat is not None:
            await beat  # a heartbeat is being written: never interleave two sends
        self._sending_since = now
        try:
            await self._send(message)
        finally:
            self._sending_since = None

    async def _start(self, message: Message) -> None:
        config = self._config
        encoding = get_header(message.get("headers", ()), b"content-encoding")
        self._decoder = None
        decodable = True
        if encoding is not None:
            coding = encoding.strip().lower()
            if coding in (b"gzip", b"x-gzip"):
                self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif coding == b"deflate":
                self._decoder = zlib.decompressobj()
            elif coding != b"identity":
                decodable = False
                logger.warning(
                    "an event stream left the app %s-encoded; put the compression middleware "
                    "outside SSEMiddleware or exclude text/event-stream from it",
                    coding.decode("latin-1"),
                )
        headers = stream_headers(
            message.get("headers", ()),
            http2=self._scope.get("http_version") == "2",
            drop_encoding=decodable,
        )
        self._loop = loop = asyncio.get_running_loop()
        self.beats = 0
        self.last = loop.time()
        self._tail = b"\n\n"
        self._heartbeat = config.heartbeat_message
        self._sending_since = None
        self._beat = None
        self._ticker = None
        self.stream = True
        annotate(self._scope, "aimiddleware.sse.stream", True)
        await self._send({**message, "headers": headers})
        # an empty body pushes the headers through outer middlewares that hold
        # http.response.start until the first body message (some GZipMiddleware versions)
        await self._send(dict(_FLUSH))
        if config.cancel_on_disconnect:
            self.watch()
        if config.heartbeat is not None or config.send_timeout is not None:
            self._ticker = asyncio.ensure_future(self._tick())

    # -- heartbeats and the send timeout ----------------------------------------------------

    async def _tick(self) -> None:
        interval = self._config.heartbeat
        timeout = self._config.send_timeout
        loop = self._loop
        while not self.complete and self.outcome is None:
            now = loop.time()
            wake = math.inf
            if timeout is not None:
                since = self._sending_since
                if since is not None and now - since >= timeout:
                    self._drop(timeout)
                    return
                wake = (since if since is not None else now) + timeout
            if interval is not None:
                due = self.last + interval
                if now >= due:
                    # a heartbeat may only go out where one event ended
                    if self._sending_since is None and ends_event(self._tail):
                        await self._send_heartbeat()
                        continue
                    due = now + interval  # mid-event or mid-send: the app is alive, look later
                wake = min(wake, due)
            await asyncio.sleep(max(0.0, wake - now))

    async def _send_heartbeat(self) -> None:
        timeout = self._config.send_timeout
        beat = self._loop.create_future()
        self._beat = beat
        try:
            if timeout is None:
                await self._send(dict(self._heartbeat))
            else:
                async with asyncio.timeout(timeout):
                    await self._send(dict(self._heartbeat))
        except TimeoutError:
            self._drop(timeout or 0.0)
        except Exception:  # the server refused the write: the peer is gone
            self.peer_gone()
        else:
            self.beats += 1
            self.last = self._loop.time()
        finally:
            self._beat = None
            if not beat.done():
                beat.set_result(None)

    # -- ending ------------------------------------------------------------------------------

    def _drop(self, timeout: float) -> None:
        if self.outcome is None and not self.complete:
            logger.warning(
                "dropping a stream whose client stopped reading (no progress for %.1fs) path=%s",
                timeout,
                self._scope.get("path", ""),
            )
            self.outcome = "send_timeout"
            self._loop.call_soon(self._cancel_app)

    def peer_gone(self) -> None:
        if self.outcome is None and not self.complete:
            self.outcome = "client_disconnected"
            if self._config.cancel_on_disconnect:
                # deferred: the app may be the one that just read the disconnect, in this task
                asyncio.get_running_loop().call_soon(self._cancel_app)

    def _cancel_app(self) -> None:
        # only while the app runs: the task is then suspended inside it, so the cancellation
        # lands in the app and never in the middlewares around this one
        if self.app_running and self._task is not None and not self.cancel_requested:
            self.cancel_requested = True
            self._task.cancel()

    def absorb_cancel(self) -> bool:
        """Undo the cancellation this exchange requested; ``False`` if someone else's remains."""
        if not self.cancel_requested or self._task is None:
            return False
        self.cancel_requested = False
        return self._task.uncancel() == 0

    async def close(self) -> None:
        """Stop the ticker and the watch; record what happened."""
        ticker = self._ticker
        if ticker is not None:
            ticker.cancel()
            # wait() rather than await: a cancellation of this task from outside must propagate
            await asyncio.wait((ticker,))
            if not ticker.cancelled() and ticker.exception() is not None:
                logger.error("the heartbeat ticker failed", exc_info=ticker.exception())
        await self.stop_watching()
        if self.stream:
            scope = self._scope
            annotate(scope, "aimiddleware.sse.heartbeats", self.beats)
            outcome = self.outcome or ("complete" if self.complete else "incomplete")
            annotate(scope, "aimiddleware.sse.outcome", outcome)
