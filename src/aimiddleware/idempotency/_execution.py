"""One claimed request: run the app, forward its response (:mod:`._forwarding`) and record it
(:mod:`._recording`)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

from ..context import ASGIApp, Message, Receive, Scope, Send
from ._claim import DROPPED, FINAL, RECORDING, STREAMING
from ._forwarding import OPEN, Forwarder
from ._heartbeat import Heartbeats
from ._options import IdempotencyOptions
from ._recording import Recorder
from ._recovery import keep_alive

__all__ = ["Execution"]


async def _drive(run: Coroutine[Any, Any, None], waiter: asyncio.Future[None]) -> None:
    """Run the execution and hand its outcome straight to the waiting request.

    Settling the future here, rather than from a done-callback of the task, saves the request
    one trip through the event loop.
    """
    try:
        await run
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        if waiter.done():  # the request was cancelled meanwhile: keep_alive reports it
            raise
        waiter.set_exception(exc)
    else:
        if not waiter.done():
            waiter.set_result(None)


class Execution(Forwarder):
    """The request that won its claim: its app's messages go to the client first (this is its
    :class:`Forwarder`) and into the record (its :class:`Recorder`) afterwards, so the first
    byte is never delayed by the store."""

    __slots__ = ("_heartbeats", "extra_headers", "recorder")

    def __init__(
        self,
        config: IdempotencyOptions,
        scope: Scope,
        send: Send,
        recorder: Recorder,
        extra_headers: Iterable[tuple[bytes, bytes]],
        heartbeats: Heartbeats,
    ) -> None:
        Forwarder.__init__(self, scope, send, config.abort)
        self.recorder = recorder
        self.extra_headers = extra_headers
        self._heartbeats = heartbeats

    async def serve(self, app: ASGIApp, receive: Receive, stream: bool) -> None:
        """Run the app for the client; ``stream``: the request asks for an event stream."""
        if self._abort:
            await self.run(app, receive)
            return
        receive = self.hiding_disconnect(receive)
        if not stream:
            # Inline: a task costs a trip through the event loop on every request, and only a
            # stream gets cancelled from outside when its client leaves (the SSE middleware
            # does). The disconnect itself is still hidden from the app.
            await self.run(app, receive)
            return
        # A stream runs in a task of its own: an outer cancellation (the client left, the SSE
        # middleware cancels us) stops only the forwarding, the generation runs on and is stored.
        # We wait on a plain future, not the task (awaiting a task would pass the cancel on).
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        task = loop.create_task(_drive(self.run(app, receive), waiter))
        try:
            await waiter  # the app's exception, if any, goes on up from here
        except asyncio.CancelledError:
            if not task.done():
                self.detach()
                keep_alive(task)
            raise

    async def run(self, app: ASGIApp, receive: Receive) -> None:
        """Run the app to its end, then store or release the record."""
        recorder = self.recorder
        self._heartbeats.add(recorder)  # renewed every config.heartbeat seconds until done
        error: BaseException | None = None
        try:
            await app(self.scope, receive, self.send)
        except asyncio.CancelledError as exc:
            error = exc
            if recorder.state not in FINAL:
                # a cancelled task may not await again under anyio's level cancellation:
                # release from a task of its own
                keep_alive(asyncio.ensure_future(recorder.release("cancelled")))
            raise
        except BaseException as exc:
            error = exc
            if recorder.state not in FINAL:
                await recorder.release("app_error")
            raise
        else:
            if recorder.state not in FINAL:
                # a dropped record said why when it was dropped
                await recorder.release(None if recorder.state is DROPPED else "incomplete")
        finally:
            if self.continued is not None:  # the client left: the work it did not wait for ends
                self.continued.end(error)

    async def send(self, message: Message) -> None:
        """The app's ``send``: forward, then record (the end of the response: record, then
        forward). :meth:`forward` and :meth:`end` are written out inline, in one place: this
        runs for every message of every claimed response."""
        kind = message["type"]
        recorder = self.recorder
        last = False
        if kind == "http.response.body":
            if not message.get("more_body", False):
                body = message.get("body", b"")
                if body and recorder.stream:
                    # the last event goes out now; only the end of the body waits for the record
                    await self.send({"type": "http.response.body", "body": body, "more_body": True})
                    message = {"type": "http.response.body", "body": b"", "more_body": False}
                elif body and recorder.state in RECORDING:
                    recorder.keep(body)
                if recorder.state in RECORDING:
                    # stored before the client sees the end of the body
                    await recorder.complete()
                self.ended = last = True
        elif kind == "http.response.start":
            raw = list(message.get("headers", ()))
            recorder.start(int(message["status"]), raw)
            raw += self.extra_headers
            message = {**message, "headers": raw}
        else:
            # trailers, pathsend, ...: a response we cannot replay faithfully
            recorder.drop("unsupported")
        if self.link is OPEN:
            if self._abort:
                await self._send(message)
            else:
                try:
                    await self._send(message)
                except OSError:
                    # the server reports a gone client (ASGI spec 2.4): finish and record anyway
                    self.detach()
        if last:
            if self._ended is not None:
                self._ended.set()
        elif kind == "http.response.body" and recorder.state in RECORDING:
            body = message.get("body", b"")
            if body:
                if recorder.stream:
                    await recorder.chunk(bytes(body))
                else:
                    recorder.keep(body)
            elif recorder.state is STREAMING:
                await recorder.announce()
