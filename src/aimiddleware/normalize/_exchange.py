"""The per-request side of :class:`~aimiddleware.normalize.NormalizeMiddleware`."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from .._asgi import (
    EVENT_STREAM,
    Message,
    Scope,
    Send,
    annotate,
    get_header,
    get_headers,
    media_type,
    request_id,
    route_path,
    trace_id,
)
from .._openai import llm_operation
from ..errors import error_defaults as defaults
from ..errors import wants_problem
from ._mapping import GENERIC_5XX, ErrorInfo, is_json_rpc, read_error
from ._routes import NormalizeRoute, prefers_minimal

if TYPE_CHECKING:
    from .middleware import NormalizeMiddleware

__all__ = ["Exchange"]

logger = logging.getLogger("aimiddleware.normalize")

_PASS, _HOLD_ERROR, _HOLD_MINIMAL, _STREAM, _DROP = range(5)
_BOUNDARIES: Final = (b"\n\n", b"\r\r", b"\n\r\n")
_MAX_PARTIAL_EVENT: Final = 64 * 1024
_REPLACED: Final = frozenset(
    {b"content-type", b"content-length", b"content-encoding", b"transfer-encoding"}
)
_STREAM_DONE: Final = b"data: [DONE]\n\n"


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _last_boundary(body: bytes) -> int:
    """The end of the last complete event in ``body`` (-1 if none)."""
    best = -1
    for terminator in _BOUNDARIES:
        at = body.rfind(terminator)
        if at >= 0:
            best = max(best, at + len(terminator))
    return best


class Exchange:
    """One request through the normalisation middleware."""

    __slots__ = (
        "_chunks",
        "_held",
        "_middleware",
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

    def __init__(self, middleware: NormalizeMiddleware, scope: Scope, send: Send) -> None:
        self._middleware = middleware
        self._scope = scope
        self._send = send
        self._route: NormalizeRoute | None = middleware.route_for(route_path(scope))
        self.mode = _PASS
        self.started = False  # http.response.start went downstream
        self.complete = False
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
        if status >= 500 and (route is None or route.format != "passthrough"):
            # a server error is rebuilt from its status alone: its body (exception text, an
            # upstream's answer, debug fields, a JSON-RPC error, an event stream) may carry
            # what the client must not see, so none of it is read or forwarded
            kind, code = defaults(status)
            await self._emit(ErrorInfo(status, GENERIC_5XX, kind, code=code), list(raw))
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

    async def _hold_body(self, message: Message) -> None:
        body = message.get("body", b"")
        if body and not self._overflow:
            self._size += len(body)
            limit = self._middleware.max_body
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
        # whole events only: if the app dies mid-event, the error event that follows must not
        # be glued to half an event (the client would dispatch the broken JSON first)
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if not more:
            self.complete = True
        if self._pending:
            body, self._pending = self._pending + body, b""
        elif not more or not body or body.endswith(_BOUNDARIES):
            await self._send(message)
            return
        if more and not body.endswith(_BOUNDARIES):
            cut = _last_boundary(body)
            if cut < 0:
                if len(body) <= _MAX_PARTIAL_EVENT:
                    self._pending = body
                    return
                cut = len(body)  # not event-shaped at all: stop holding
            body, self._pending = body[:cut], body[cut:]
        await self._send({"type": "http.response.body", "body": body, "more_body": more})

    # -- rewriting ---------------------------------------------------------------------------

    async def _finish_error(self) -> None:
        held = self._held or {}
        headers = held.get("headers", [])
        body: bytes | None = None if self._overflow else b"".join(self._chunks)
        encoding = get_header(headers, b"content-encoding")
        if encoding is not None and encoding.strip().lower() != b"identity":
            body = None  # compressed by something inside: the status speaks alone
        content_type = media_type(get_header(headers, b"content-type"))
        if body and content_type.endswith("json"):
            try:
                if is_json_rpc(json.loads(body)):
                    await self._release([body], more=False)
                    return
            except (ValueError, UnicodeDecodeError, RecursionError):
                pass
        info = read_error(
            int(held.get("status", 500)),
            body,
            content_type,
            path=route_path(self._scope),
            response_headers=headers,
        )
        await self._emit(info, headers)

    async def _finish_minimal(self) -> None:
        held = self._held or {}
        route = self._route
        body = b"".join(self._chunks)
        if not body:  # HEAD, or an empty 204-like body: nothing to trim
            await self._release([body], more=False)
            return
        try:
            trimmed = _dumps(route.trim(json.loads(body))) if route is not None else body
        except Exception:
            logger.exception(
                "the minimal representation of %s failed; the full one was sent",
                self._scope.get("path", ""),
            )
            await self._release([body], more=False)
            return
        headers = [h for h in held.get("headers", []) if h[0].lower() != b"content-length"]
        headers.append((b"content-length", str(len(trimmed)).encode("ascii")))
        headers.append((b"preference-applied", b"return=minimal"))
        annotate(self._scope, "aimiddleware.normalize.minimal", True)
        self.mode, self._held, self._chunks = _PASS, None, []
        self.started = True
        await self._send({**held, "headers": headers})
        self.complete = True
        await self._send({"type": "http.response.body", "body": trimmed, "more_body": False})

    def _describe(self, info: ErrorInfo) -> ErrorInfo:
        if info.status >= 500 and info.message == GENERIC_5XX:
            info.message = f"{GENERIC_5XX} Request id: {request_id(self._scope)}."
        scope = self._scope
        annotate(scope, "aimiddleware.normalize.error_type", info.type)
        if info.code:
            annotate(scope, "aimiddleware.normalize.error_code", info.code)
        return info

    async def _emit(self, info: ErrorInfo, headers: list[Any]) -> None:
        """Send ``info`` as the whole response, keeping every header but the body's own."""
        scope = self._scope
        self._describe(info)
        route = self._route
        accept = get_header(scope.get("headers", ()), b"accept")
        rid = request_id(scope)
        if (route is not None and route.format == "problem") or wants_problem(accept):
            payload = info.problem(self._middleware.problem_type_base, rid, trace_id(scope))
            content_type = b"application/problem+json"
        else:
            payload = info.envelope(trace_id(scope))
            content_type = b"application/json"
        body = _dumps(payload)
        out = [h for h in headers if h[0].lower() not in _REPLACED]
        if get_header(out, b"x-request-id") is None:
            out.append((b"x-request-id", rid.encode("ascii")))
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
            logger.info(
                "client disconnected during %s %s request_id=%s",
                scope.get("method", ""),
                scope.get("path", ""),
                request_id(scope),
            )
            return
        status, message, headers = 500, None, []
        if isinstance(exc, HTTPException):
            status, message = exc.status_code, exc.detail
            headers = [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in (exc.headers or {}).items()
            ]
        if status >= 500:
            message = None
            annotate(scope, "aimiddleware.normalize.exception", type(exc).__qualname__)
            logger.error(
                "unhandled %s in %s %s request_id=%s",
                type(exc).__qualname__,
                scope.get("method", ""),
                scope.get("path", ""),
                request_id(scope),
                exc_info=exc,
            )
        if self.complete:
            return
        kind, code = defaults(status)
        info = ErrorInfo(status, message or GENERIC_5XX, kind, code=code)
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
        self._describe(info)
        self._pending = b""  # half an event is dropped, never glued to the error
        data = _dumps(info.envelope(trace_id(self._scope)))
        if llm_operation(route_path(self._scope)) in ("chat", "text_completion"):
            # the openai SDK raises APIError on a data chunk carrying "error"
            tail = b"data: " + data + b"\n\n" + _STREAM_DONE
        else:
            tail = b"event: error\ndata: " + data + b"\n\n"
        self.complete = True
        await self._send({"type": "http.response.body", "body": tail, "more_body": False})

    async def finished(self) -> None:
        """The app returned: flush what it left half done."""
        if self.mode in (_HOLD_ERROR, _HOLD_MINIMAL):
            if self.mode == _HOLD_MINIMAL:
                await self._finish_minimal()
            else:
                await self._finish_error()
        elif not self.started:
            scope = self._scope
            logger.error(
                "the app returned without a response in %s %s request_id=%s",
                scope.get("method", ""),
                scope.get("path", ""),
                request_id(scope),
            )
            kind, code = defaults(500)
            await self._emit(ErrorInfo(500, GENERIC_5XX, kind, code=code), [])
        elif self._pending:
            pending, self._pending = self._pending, b""
            await self._send({"type": "http.response.body", "body": pending, "more_body": True})
