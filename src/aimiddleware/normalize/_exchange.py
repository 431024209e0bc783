"""The per-request side of :class:`~aimiddleware.normalize.NormalizeMiddleware`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import ClientDisconnect

from .._asgi import EVENT_STREAM, get_header, get_headers, media_type
from .._sse import ends_event
from ..context import (
    Message,
    Scope,
    Send,
    annotate,
    get_error,
    request_id,
    route_path,
    set_error_format,
)
from ..errors import ErrorInfo, render_error
from ._mapping import GENERIC_5XX, describe, exception_error, held_error, in_chosen_shape, where
from ._routes import NormalizeRoute, minimal_response, prefers_minimal
from ._stream import SequencedSend, cut_events, error_event

if TYPE_CHECKING:
    from ._options import NormalizeOptions

__all__ = ["Exchange"]

logger = logging.getLogger("aimiddleware.normalize")

_PASS, _HOLD_ERROR, _HOLD_MINIMAL, _STREAM, _DROP = range(5)
_REPLACED: Final = frozenset(
    {b"content-type", b"content-length", b"content-encoding", b"transfer-encoding"}
)


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

    def __init__(self, config: NormalizeOptions, scope: Scope, send: Send) -> None:
        self._config = config
        self._scope = scope
        self._send = send
        self._route: NormalizeRoute | None = config.route_for(route_path(scope))
        if self._route is not None:
            # the middlewares inside write their own errors in the route's shape
            set_error_format(scope, self._route.format_or_openai, config.problem_type_base)
        self.mode = _PASS
        self.started = False  # http.response.start went downstream
        self.complete = False
        self._send = SequencedSend(send) if scope["path"].endswith("/responses") else send
        self._held: Message | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._overflow = False
        self._pending = b""

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
                await self._stream_body(message)
            else:
                await self._hold_body(message)
        elif kind == "http.response.start":
            await self._start(message)
        elif self.mode in (_HOLD_ERROR, _HOLD_MINIMAL) and kind == "http.response.trailers":
            return  # the rewritten response carries no trailers
        else:
            await self._send(message)

    async def _start(self, message: Message) -> None:
        raw = message.get("headers") or ()
        # one pass over the headers: this runs for every response
        content_type = b""
        has_id = encoded = False
        for name, value in raw:
            lower = name.lower()
            if lower == b"content-type":
                content_type = value
            elif lower == b"x-request-id":
                has_id = True
            elif lower == b"content-encoding":
                encoded = True
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
        stream = (
            content_type[:17].lower() == b"text/event-stream"
            and media_type(content_type) == EVENT_STREAM
        )
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

    async def _stream_body(self, message: Message) -> None:
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if not more:
            self.complete = True
        if not self._pending and (not more or not body or ends_event(body)):
            await self._send(message)
            return
        out, self._pending = cut_events(self._pending, body, more)
        if out is not None:
            await self._send({"type": "http.response.body", "body": out, "more_body": more})

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
        out = [h for h in headers if h[0].lower() not in _REPLACED]
        if get_header(out, b"x-request-id") is None:
            out.append((b"x-request-id", request_id(scope).encode("ascii")))
        out.append((b"content-type", content_type))
        out.append((b"content-length", str(len(body)).encode("ascii")))
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
