"""The guard's own answers: 408, 413 and 431 in the library's one error shape."""

from __future__ import annotations

from typing import Final

from ..context import Scope, Send
from ..errors import ErrorInfo, send_error

__all__ = ["refuse"]

_MESSAGES: Final = {
    408: "The request body did not arrive within {limit} seconds.",
    413: "The request body exceeds the limit of {limit} bytes.",
    431: "The request header fields exceed the limit of {limit} bytes.",
}


async def refuse(
    send: Send, scope: Scope, status: int, limit: float, problem_type_base: str | None
) -> None:
    """Answer ``status`` and ask the server to close the connection.

    The connection is closed because the rest of the request body is never read: leaving it
    on the wire would make the server parse body bytes as the next request, or drain a body the
    limit exists to refuse.
    """
    shown = int(limit) if float(limit).is_integer() else limit
    info = ErrorInfo(status, _MESSAGES[status].format(limit=shown))
    await send_error(send, scope, info, type_base=problem_type_base, close=True)
