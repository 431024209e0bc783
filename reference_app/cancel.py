"""Stop every generation whose client has gone, streamed or not, and say what it cost.

A streamed answer stops when its client leaves: the SSE middleware cancels the stream, which
closes the engine's generation. A non-streamed answer sends nothing until it is complete, so
nothing notices the client leave; agents time out and retry, and the abandoned generation would
hold an instance to its end. :class:`ClientWatch` wraps the app and, from the end of the request
body until the response starts, listens for ``http.disconnect`` as Starlette's
``StreamingResponse`` does; when it comes, it cancels the request (the engine stops within one
token and the instance goes to the next request in line, queued requests leave the line) and
answers ``499`` (nginx's "client closed request": the client never reads it) whose ``usage``
says what was generated, so the rate limiter outside settles the tokens to that and releases
the concurrency slot, and tracing records the request for what it was.

It also tells the engine which tier a request is in (:func:`current_request`), for the
priority between tiers (``waitline.py``).

A request that ``IdempotencyMiddleware`` claimed under an ``Idempotency-Key`` is not watched: its
answer is completed and stored for the retry, whoever left (that middleware hides the
disconnect from the app as well).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from dataclasses import dataclass
from typing import Any, Final

from aimiddleware.context import get_annotations, get_principal, route_path
from aimiddleware.errors import ErrorInfo

__all__ = ["CLIENT_CLOSED", "GENERATIONS", "ClientWatch", "RequestTicket", "current_request"]

ASGIApp = Any
Message = dict[str, Any]

#: what ``IdempotencyMiddleware`` records for a request it runs under a key (docs/idempotency.md)
IDEMPOTENCY_OUTCOME: Final = "aimiddleware.idempotency.outcome"

#: the routes that generate (an embedding is not cancelled: its instance is not the line's, and
#: its worker thread must finish before the next one may use it)
GENERATIONS: Final = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses"})

#: nginx's status for a request whose client closed the connection before the answer
CLIENT_CLOSED: Final = 499


@dataclass(slots=True)
class RequestTicket:
    """One request, as the engine sees it: its tier, and the tokens generated for it so far."""

    tier: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


_CURRENT: contextvars.ContextVar[RequestTicket | None] = contextvars.ContextVar(
    "reference_app_request", default=None
)


def current_request() -> RequestTicket | None:
    """The ticket of the request being served in this context (``None`` outside one)."""
    return _CURRENT.get()


def tier_of(scope: dict[str, Any], default: str) -> str:
    """The tier the rate limiter placed the request in, else the principal's, else ``default``."""
    tier = get_annotations(scope).get("aimiddleware.ratelimit.tier")
    if isinstance(tier, str):
        return tier
    principal = get_principal(scope)
    if principal is not None and principal.tier:
        return principal.tier
    return default


class ClientWatch:
    """Cancels a generation (``GENERATIONS``) whose client leaves before its response starts
    (see the module's docs)."""

    def __init__(self, app: ASGIApp, *, default_tier: str) -> None:
        self.app = app
        self.default_tier = default_tier

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or route_path(scope) not in GENERATIONS
        ):
            await self.app(scope, receive, send)
            return
        ticket = RequestTicket(tier_of(scope, self.default_tier))
        token = _CURRENT.set(ticket)
        try:
            if get_annotations(scope).get(IDEMPOTENCY_OUTCOME) == "claimed":
                # promised to complete and be stored for the retry: never cancelled, and not
                # watched either (a disconnect read would only stop the forwarding early)
                await self.app(scope, receive, send)
            else:
                await _Watch(scope, receive, send, ticket).run(self.app)
        finally:
            _CURRENT.reset(token)


class _Watch:
    """One request: the app runs in this task; a read of ``receive`` waits for the client."""

    __slots__ = (
        "_read",
        "_receive",
        "_send",
        "_task",
        "done",
        "gone",
        "scope",
        "started",
        "ticket",
    )

    def __init__(self, scope: dict[str, Any], receive: Any, send: Any, ticket: RequestTicket):
        self.scope = scope
        self._receive = receive
        self._send = send
        self.ticket = ticket
        self._read: asyncio.Future[Message] | None = None
        self._task: asyncio.Future[None] | None = None
        self.started = self.done = self.gone = False

    async def run(self, app: ASGIApp) -> None:
        # the app runs in a task of its own (with this context: the ticket), which the watch
        # may cancel; this task's own cancellation (from outside) is passed on to it
        task = self._task = asyncio.ensure_future(app(self.scope, self.receive, self.send))
        try:
            try:
                await asyncio.wait((task,))
            except asyncio.CancelledError:
                task.cancel()
                await asyncio.wait((task,))
                if self.started or not self._client_left():
                    raise
                # the client's leaving, seen from outside as well (the SSE middleware cancels
                # an app whose client it saw leave): answered below like the watch's own
                self.gone = True
        finally:
            self.done = True  # the watch never cancels a finished request
            read = self._read
            if read is not None and not read.done():
                read.cancel()
        if not task.cancelled():
            task.result()  # the app's exception goes on up
        elif not self.gone:
            raise asyncio.CancelledError  # cancelled by someone else than the watch
        if self.gone and not self.started:
            await self._closed()

    async def receive(self) -> Message:
        read = self._read
        if read is not None:
            # the watch is reading: one read of the server at a time, its answer shared
            return await asyncio.shield(read)
        message: Message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self._watch()
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True  # from here the response's own machinery sees the client go
        await self._send(message)

    def _watch(self) -> None:
        read = asyncio.ensure_future(self._receive())
        read.add_done_callback(self._heard)
        self._read = read

    def _client_left(self) -> bool:
        read = self._read
        if read is None or not read.done() or read.cancelled() or read.exception() is not None:
            return False
        return bool(read.result()["type"] == "http.disconnect")

    def _heard(self, _: asyncio.Future[Message]) -> None:
        if self.started or self.done or not self._client_left():
            return
        self.gone = True
        if self._task is not None:
            self._task.cancel()

    async def _closed(self) -> None:
        """The answer nobody reads: what was generated, for the middlewares outside."""
        message = (
            "The client closed the connection before the answer was complete; "
            "the generation was stopped."
        )
        info = ErrorInfo(
            CLIENT_CLOSED, message, "invalid_request_error", code="client_closed_request"
        )
        body = json.dumps({**info.envelope(), "usage": self.ticket.usage()}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await self._send(
            {"type": "http.response.start", "status": CLIENT_CLOSED, "headers": headers}
        )
        await self._send({"type": "http.response.body", "body": body, "more_body": False})
