"""The per-request side of :class:`~aimiddleware.normalize.NormalizeMiddleware`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect

from .._asgi import get_headers, media_type
from .._sse import EVENT_TERMINATORS
from ..context import Message, Scope, Send, annotate, get_error, request_id, route_path
from ..errors import ErrorInfo, render_error
from ._mapping import (
    GENERIC_5XX,
    describe,
    error_headers,
    exception_error,
    held_error,
    in_chosen_shape,
    where,
)
from ._routes import NormalizeRoute, minimal_response, prefers_minimal
from ._stream import SequencedSend, cut_events, error_event, is_stream, scan_start

if TYPE_CHECKING:
    from ._options import NormalizeOptions

__all__ = ["Exchange"]

logger = logging.getLogger("aimiddleware.normalize")

_PASS, _HOLD_ERROR, _HOLD_MINIMAL, _STREAM, _DROP = range(5)


class Exchange:
    """One request through the normalisation middleware."""

    __slots__ = (
        "_chunks",
        "_config",
        "_held",
        "_overflow",
        "_pending",
        "_route",
        "_scope",
        "_send",
        "_size",
        "complete",
        "mode",
        "started",
    )

    def __init__(
        self, config: NormalizeOptions, scope: Scope, send: Send, route: NormalizeRoute | None
    ) -> None:
        self._config = config
        self._scope = scope
        self._route = route  # the configured route this request matched
        self.mode = _PASS
        self.started = False  # http.response.start went downstream
        self.complete = False
        self._send = SequencedSend(send) if scope["path"].endswith("/responses") else send
        self._held: Message | None = None
        self._chunks: list[bytes] = []
        self._size, self._overflow, self._pending = 0, False, b""

    # -- send --------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.mode == _DROP:
            return  # the rest of a replaced 5xx: nothing of it reaches the client
        if kind == "http.response.body":
            mode = self.mode
            if mode == _PASS:
                if not message.get("more_body", False):
                    self.complete = True
                await self._send(message)
            elif mode == _STREAM:
                out = self._stream_out(message)
                if out is not None:
                    await self._send(out)
            else:
                await self._hold_body(message)
        elif kind == "http.response.start":
            plain = self._plain_start(message)
            if plain is None:
                await self._start(message)
            else:
                self.started = True
                await self._send(plain)
        elif self.mode in (_HOLD_ERROR, _HOLD_MINIMAL) and kind == "http.response.trailers":
            return  # the rewritten response carries no trailers
        else:
            await self._send(message)

    def _plain_start(self, message: Message) -> Message | None:
        """The start of a response neither an error nor trimmed (most), as it goes out; ``None``
        for the others, which :meth:`_start` handles. No coroutine: it runs for every response."""
        status = message["status"]
        route = self._route
        if type(status) is not int or status >= 400:
            return None  # an error: held, rewritten or replaced
        if route is not None and route.minimal is not None:
            return None  # maybe trimmed
        raw = message.get("headers") or ()
        content_type, has_id, _ = scan_start(raw)
        if is_stream(content_type):
            self.mode = _STREAM
        if has_id:
            return message
        request = (b"x-request-id", request_id(self._scope).encode("ascii"))
        return {**message, "headers": [*raw, request]}

    async def _start(self, message: Message) -> None:
        raw = message.get("headers") or ()
        content_type, has_id, encoded = scan_start(raw)
        status = int(message["status"])
        route = self._route
        minimal = route is not None and route.minimal is not None and 200 <= status < 300
        if not has_id or minimal:
            headers = list(raw)
            if not has_id:
                headers.append((b"x-request-id", request_id(self._scope).encode("ascii")))
            if minimal:
                headers.append((b"vary", b"Prefer"))
            message = {**message, "headers": headers}
        if status >= 400 and (route is None or route.format != "passthrough"):
            recorded = get_error(self._scope)
            if isinstance(recorded, ErrorInfo) and recorded.status == status:
                await self._library_error(recorded, message, content_type)
                return
            if status >= 500:
                # any other server error is rebuilt from its status alone: its body (exception
                # text, an upstream's answer, debug fields, a JSON-RPC error, an event stream)
                # may carry what the client must not see, so none of it is read or forwarded
                await self._emit(ErrorInfo(status, GENERIC_5XX), list(raw))
                self.mode = _DROP
                return
        stream = is_stream(content_type)
        if status >= 400 and not stream and not message.get("trailers"):
            if route is None or route.format != "passthrough":
                self.mode, self._held = _HOLD_ERROR, message
                return
        elif (
            minimal
            and media_type(content_type).endswith("json")
            and not encoded
            and not message.get("trailers")
            and prefers_minimal(get_headers(self._scope.get("headers", ()), b"prefer"))
        ):
            self.mode, self._held = _HOLD_MINIMAL, message
            return
        elif stream:
            self.mode = _STREAM
        self.started = True
        await self._send(message)

    async def _library_error(self, info: ErrorInfo, start: Message, content_type: bytes) -> None:
        """The library's own error (``errors.send_error``), a deliberate 5xx such as the rate
        limiter's 503 too: its type, code and message stand. Already in the shape this request
        gets, it goes out as written; else it is written again in that shape."""
        if in_chosen_shape(self._scope, content_type):
            describe(self._scope, info)
            self.started = True
            await self._send(start)
        else:
            await self._emit(info, list(start.get("headers") or ()))
            self.mode = _DROP  # the body written in the other shape

    async def _hold_body(self, message: Message) -> None:
        body = message.get("body", b"")
        if body and not self._overflow:
            self._size += len(body)
            limit = self._config.max_body
            if self._size > limit:
                if self.mode == _HOLD_MINIMAL:
                    # too large to trim here: send it as the app wrote it
                    await self._release([*self._chunks, body], more=message.get("more_body", False))
                    return
                self._overflow = True
                self._chunks.clear()
            else:
                self._chunks.append(body)
        if not message.get("more_body", False):
            if self.mode == _HOLD_MINIMAL:
                await self._finish_minimal()
            else:
                await self._finish_error()

    async def _release(self, chunks: list[bytes], *, more: bool) -> None:
        """Send the held response unchanged and stop holding."""
        held = self._held or {}
        self.mode, self._held, self._chunks = _PASS, None, []
        self.started = True
        await self._send(held)
        self.complete = not more
        await self._send(
            {"type": "http.response.body", "body": b"".join(chunks), "more_body": more}
        )

    def _stream_out(self, message: Message) -> Message | None:
        """What of a stream's body message goes out now (no coroutine: it runs per chunk)."""
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if not more:
            self.complete = True
        if not self._pending and (not more or not body or body.endswith(EVENT_TERMINATORS)):
            return message
        out, self._pending = cut_events(self._pending, body, more)
        return (
            None if out is None else {"type": "http.response.body", "body": out, "more_body": more}
        )

    # -- rewriting ---------------------------------------------------------------------------

    async def _finish_error(self) -> None:
        held = self._held or {}
        body: bytes | None = None if self._overflow else b"".join(self._chunks)
        info = held_error(held, body, route_path(self._scope))
        if info is None:  # a JSON-RPC error: left as it is
            await self._release([body or b""], more=False)
        else:
            await self._emit(info, held.get("headers", []))

    async def _finish_minimal(self) -> None:
        held = self._held or {}
        body = b"".join(self._chunks)
        trimmed = minimal_response(self._route, held, body, self._scope)
        if trimmed is None:
            await self._release([body], more=False)
            return
        self.mode, self._held, self._chunks = _PASS, None, []
        self.started = True
        await self._send(trimmed[0])
        self.complete = True
        await self._send({"type": "http.response.body", "body": trimmed[1], "more_body": False})

    async def _emit(self, info: ErrorInfo, headers: list[Any]) -> None:
        """Send ``info`` as the whole response, keeping every header but the body's own."""
        scope = self._scope
        describe(scope, info)
        content_type, body = render_error(scope, info, type_base=self._config.problem_type_base)
        out = error_headers(scope, headers, content_type, len(body))
        self.mode, self._held, self._chunks = _PASS, None, []
        self.started = True
        self.complete = True
        await self._send({"type": "http.response.start", "status": info.status, "headers": out})
        if scope.get("method") == "HEAD":
            body = b""
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    # -- failures ----------------------------------------------------------------------------

    async def failed(self, exc: Exception) -> None:
        """The app raised: answer with one clean error if anything can still be sent."""
        scope = self._scope
        if isinstance(exc, ClientDisconnect):
            # not a server fault: the peer left while the app was still reading or writing
            logger.info("client disconnected during %s %s request_id=%s", *where(scope))
            return
        info, headers = exception_error(exc)
        if info.status >= 500:
            name = type(exc).__qualname__
            annotate(scope, "aimiddleware.normalize.exception", name)
            logger.error("unhandled %s in %s %s request_id=%s", name, *where(scope), exc_info=exc)
        if self.complete:
            return
        try:
            if self.mode == _STREAM:
                await self._stream_error(info)
            elif not self.started:
                await self._emit(info, headers)
            # else: a plain body is half sent; returning uncompleted makes the server cut the
            # connection, which the client sees as the failure it is
        except Exception as send_error:  # the client is gone too
            logger.debug("could not report the failure to the client: %r", send_error)

    async def _stream_error(self, info: ErrorInfo) -> None:
        describe(self._scope, info)
        self._pending = b""  # half an event is dropped, never glued to the error
        tail = error_event(self._scope, info, self._send)
        self.complete = True
        await self._send({"type": "http.response.body", "body": tail, "more_body": False})

    async def finished(self) -> None:
        """The app returned: flush what it left half done."""
        if self.mode == _HOLD_MINIMAL:
            await self._finish_minimal()
        elif self.mode == _HOLD_ERROR:
            await self._finish_error()
        elif not self.started:
            at = where(self._scope)
            logger.error("the app returned without a response in %s %s request_id=%s", *at)
            await self._emit(ErrorInfo(500, GENERIC_5XX), [])
        elif self._pending:
            pending, self._pending = self._pending, b""
            await self._send({"type": "http.response.body", "body": pending, "more_body": True})
