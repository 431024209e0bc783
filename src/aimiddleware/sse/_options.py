"""The options of :class:`~aimiddleware.sse.SSEMiddleware`, validated once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .._config import check_bool, check_seconds, check_text
from ..context import ASGIApp, Message, Scope
from ..exceptions import ConfigurationError

__all__ = ["LastEventIdHook", "SSEOptions"]

LastEventIdHook = Callable[[Scope, str], Awaitable[ASGIApp | None]]
"""``async hook(scope, last_event_id)``: an ASGI app that resumes the stream, or ``None``."""


def _seconds(name: str, value: Any) -> float | None:
    return None if value is None else float(check_seconds(name, value))


@dataclass(frozen=True, slots=True)
class SSEOptions:
    """What :class:`~aimiddleware.sse.SSEMiddleware` does with event streams.

    >>> SSEOptions(heartbeat=5, send_timeout=30).heartbeat
    5.0

    :param heartbeat: seconds of silence before a heartbeat comment; ``None`` disables them.
    :param heartbeat_comment: the comment text (one line).
    :param send_timeout: seconds one write of the stream may block before the client is dropped;
        ``None`` waits as long as the server does.
    :param cancel_on_disconnect: cancel the app when the client disconnects mid-stream.
    :param last_event_id: ``async hook(scope, last_event_id)`` called when a request carries a
        ``Last-Event-ID`` header; it returns an ASGI app that serves the resumed stream, or
        ``None`` to let the app handle the request.
    """

    heartbeat: float | None = 15.0
    heartbeat_comment: str = "keep-alive"
    send_timeout: float | None = None
    cancel_on_disconnect: bool = True
    last_event_id: LastEventIdHook | None = None
    #: the heartbeat as the body message that is sent
    heartbeat_message: Message = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "heartbeat", _seconds("heartbeat", self.heartbeat))
        object.__setattr__(self, "send_timeout", _seconds("send_timeout", self.send_timeout))
        comment = check_text("heartbeat_comment", self.heartbeat_comment, empty=True)
        if "\0" in comment:
            raise ConfigurationError("heartbeat_comment must be one line of text")
        check_bool("cancel_on_disconnect", self.cancel_on_disconnect)
        if self.last_event_id is not None and not callable(self.last_event_id):
            raise ConfigurationError("last_event_id must be an async callable or None")
        line = f": {comment}\n\n" if comment else ":\n\n"
        message = {"type": "http.response.body", "body": line.encode("utf-8"), "more_body": True}
        object.__setattr__(self, "heartbeat_message", message)
