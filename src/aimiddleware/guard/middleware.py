"""RequestGuardMiddleware: refuse oversized and slow requests before anything reads them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .._config import build_options
from ..context import ASGIApp, Message, Receive, Scope, Send, replay_receive
from ._clock import FirstRead, Watch
from ._options import RENAMED, GuardOptions
from ._refusal import refuse
from ._request import GuardedRequest

__all__ = ["RequestGuardMiddleware"]

_NO_BODY_VERSIONS = frozenset({"1.0", "1.1"})


class RequestGuardMiddleware:
    """Refuse requests whose body or headers are too large, or whose body arrives too slowly.

    * ``max_request_bytes``: a ``Content-Length`` above it is answered 413 at once, without reading
      a byte of the body; a body without one (chunked) is counted as it arrives and answered
      413 as soon as it crosses the limit. The app never receives more than the limit: from
      then on its ``receive`` reports ``http.disconnect``.
    * ``body_timeout``: the whole body must arrive within this many seconds of the first read,
      else 408 (checked every tenth of the timeout, at most every second, so the answer comes
      that much later at worst). Reads after the body is complete (waiting for a disconnect)
      are not timed.
    * ``max_header_bytes``: the request's header names and values together; above it, 431.

    Each refusal is JSON in the library's one error shape (the OpenAI envelope, or RFC 9457
    when ``Accept`` prefers ``application/problem+json``), carries ``x-request-id`` and
    ``Connection: close`` (the unread body is never drained), and is sent only while the app
    has not started its response. A limit of ``None`` is off.

    Place it outermost, outside :class:`~aimiddleware.tracing.TracingMiddleware`: tracing reads
    the body of LLM requests before anything inside it runs, so a limit placed inside it comes
    too late to spare that read (``docs/guard.md``).

    >>> app = RequestGuardMiddleware(app, max_request_bytes=1 << 20)  # doctest: +SKIP

    The options are those of :class:`GuardOptions` (defaults: 8 MiB of body, 60 seconds for
    it, 64 KiB of headers), given as keywords or as ``config``. ``max_body_bytes`` is the old
    name of ``max_request_bytes``: it still works, and warns once.
    """

    __slots__ = ("_watch", "app", "config")

    def __init__(self, app: ASGIApp, config: GuardOptions | None = None, **options: Any) -> None:
        self.app = app
        self.config = build_options(
            "RequestGuardMiddleware", GuardOptions, config, options, renamed=RENAMED
        )
        # the clock of the loop serving requests (not request state: shared by all of them)
        self._watch: Watch | None = None

    @property
    def max_request_bytes(self) -> int | None:
        return self.config.max_request_bytes

    max_body_bytes = max_request_bytes  # the old name, read by existing deployments

    @property
    def body_timeout(self) -> float | None:
        return self.config.body_timeout

    @property
    def max_header_bytes(self) -> int | None:
        return self.config.max_header_bytes

    def __repr__(self) -> str:
        config = self.config
        return (
            f"RequestGuardMiddleware(max_request_bytes={config.max_request_bytes!r}, "
            f"body_timeout={config.body_timeout!r}, max_header_bytes={config.max_header_bytes!r})"
        )

    def watch(self) -> Watch:
        """The body-read clock of the running event loop."""
        loop = asyncio.get_running_loop()
        watch = self._watch
        if watch is None or watch.loop is not loop:
            timeout = self.config.body_timeout or 1.0
            watch = self._watch = Watch(loop, tick=min(1.0, timeout / 10))
        return watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # one pass over the headers (lower-case names, per the ASGI spec): this runs per request
        length: bytes | None = None
        chunked = False
        size = 0
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        config = self.config
        max_header = config.max_header_bytes
        if max_header is not None and size > max_header:
            await refuse(send, scope, 431, max_header, config.problem_type_base)
            return
        limit = config.max_request_bytes
        if length is not None and not chunked:
            declared = int(length) if length.isdigit() else None
            if declared is not None:
                if limit is not None and declared > limit:
                    await refuse(send, scope, 413, limit, config.problem_type_base)
                    return
                # the server enforces Content-Length framing: only the clock is left to watch
                if declared == 0 or config.body_timeout is None:
                    await self.app(scope, receive, send)
                    return
                limit = None
        elif not chunked and scope.get("http_version", "1.1") in _NO_BODY_VERSIONS:
            # HTTP/1.x without Content-Length or Transfer-Encoding has no body (RFC 9112 6.3)
            await self.app(scope, receive, send)
            return
        first: Message | None = None
        timeout = config.body_timeout
        deadline = 0.0
        if timeout is not None:
            # The first read happens here, before the app runs, with the least bookkeeping: most
            # bodies arrive whole in it, and the app then gets the server's own receive and send
            # behind a replay of that message, with nothing left to watch.
            loop = asyncio.get_running_loop()
            watch = self._watch
            if watch is None or watch.loop is not loop:
                watch = self.watch()
            read = FirstRead(time.monotonic() + timeout, asyncio.current_task(loop))
            watch.add(read)
            try:
                first = await receive()
            except asyncio.CancelledError:
                # ours only if nobody else cancelled the task as well
                if read.expired and read.task is not None and read.task.uncancel() == 0:
                    await refuse(send, scope, 408, timeout, config.problem_type_base)
                    return
                raise
            finally:
                watch.reads.discard(read)
            if first["type"] == "http.request" and not first.get("more_body", False):
                if limit is not None and len(first.get("body", b"")) > limit:
                    await refuse(send, scope, 413, limit, config.problem_type_base)
                    return
                await self.app(scope, replay_receive(first.get("body", b""), receive), send)
                return
            if first["type"] == "http.request":
                deadline = read.deadline
            # else the client left before sending a byte: the app is told so, nothing is timed
        request = GuardedRequest(self, config, scope, receive, send, limit, first, deadline)
        try:
            await self.app(scope, request.receive, request.send)
        except Exception:
            if not request.answered:
                raise
            # the app failed on the disconnect it was shown after the refusal: already answered
        finally:
            if not request.done:
                request.close()
