"""The guard's own answers: 408, 413 and 431 in the library's one error shape."""

from __future__ import annotations

import json
from typing import Final

from .._asgi import Scope, Send, get_header, request_id, trace_id
from ..normalize._mapping import ErrorInfo, defaults
from ..normalize._routes import wants_problem

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
    kind, code = defaults(status)
    shown = int(limit) if float(limit).is_integer() else limit
    info = ErrorInfo(status, _MESSAGES[status].format(limit=shown), kind, code=code)
    rid = request_id(scope)
    if wants_problem(get_header(scope.get("headers", ()), b"accept")):
        payload = info.problem(problem_type_base, rid, trace_id(scope))
        content_type = b"application/problem+json"
    else:
        payload = info.envelope(trace_id(scope))
        content_type = b"application/json"
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"connection", b"close"),
        (b"x-request-id", rid.encode("ascii")),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if scope.get("method") == "HEAD":
        body = b""
    await send({"type": "http.response.body", "body": body, "more_body": False})
