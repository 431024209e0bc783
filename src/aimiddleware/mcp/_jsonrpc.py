"""JSON-RPC 2.0 pieces the MCP guards need: the calls a request body carries, error responses.

The guards' own refusals use codes of ``-32000..-32019``, the band MCP left to implementations
(protocol revision 2026-07-28 calls it legacy and keeps existing uses), so that a client can tell
an authorisation refusal from a protocol error. ``HEADER_MISMATCH`` is the specification's own
code (``-32020..-32099`` is reserved for those).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from .._asgi import send_json
from ..context import Send

__all__ = [
    "FORBIDDEN_ORIGIN",
    "FORBIDDEN_TOOL",
    "HEADER_MISMATCH",
    "INSUFFICIENT_SCOPE",
    "INVALID_REQUEST",
    "PARSE_ERROR",
    "UNAUTHORIZED",
    "Call",
    "calls",
    "error_payload",
    "refuse_tool",
    "send_error",
    "shown",
]

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
UNAUTHORIZED: Final = -32010
INSUFFICIENT_SCOPE: Final = -32011
FORBIDDEN_ORIGIN: Final = -32012
FORBIDDEN_TOOL: Final = -32013
HEADER_MISMATCH: Final = -32020

# MCP tool names are 1-128 characters; a longer one (attacker-chosen) is cut before it goes
# into a header, a span attribute, a log line or an error message
_MAX_NAME: Final = 128

RequestId = str | int | None


def shown(name: str) -> str:
    """``name`` cut to 128 characters, for a message or an annotation."""
    return name if len(name) <= _MAX_NAME else name[: _MAX_NAME - 3] + "..."


@dataclass(frozen=True, slots=True)
class Call:
    """One JSON-RPC message of a request body: its method, id and (for ``tools/call``) tool."""

    method: str
    id: RequestId
    tool: str | None = None


def _call(message: Any) -> Call | None:
    if not isinstance(message, dict):
        return None
    method = message.get("method")
    if not isinstance(method, str):
        return None  # a response to a server request, or junk the server will refuse
    raw_id = message.get("id")
    request_id = raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    tool = None
    params = message.get("params")
    if method == "tools/call" and isinstance(params, dict):
        name = params.get("name")
        tool = name if isinstance(name, str) else None
    return Call(method, request_id, tool)


def calls(body: Any) -> Iterator[Call]:
    """The method calls in a parsed JSON-RPC body (one message or a batch).

    >>> [c.tool for c in calls({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
    ...                          "params": {"name": "chat"}})]
    ['chat']
    """
    for message in body if isinstance(body, list) else (body,):
        call = _call(message)
        if call is not None:
            yield call


def error_payload(
    code: int, message: str, request_id: RequestId = None, data: Any = None
) -> dict[str, Any]:
    """A JSON-RPC error response (``id`` is ``null`` when the request's id is unknown)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


async def send_error(
    send: Send,
    status: int,
    payload: dict[str, Any],
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Send a whole JSON-RPC error response that no cache may keep."""
    await send_json(send, status, payload, [(b"cache-control", b"no-store"), *headers])


async def refuse_tool(send: Send, call: Call, request_id: RequestId) -> None:
    """403 for a ``tools/call`` no rule maps: no challenge, since no scope can get it (a
    challenge would send the client on a step-up that cannot succeed)."""
    data: dict[str, Any] = {"error": "tool_not_allowed"}
    if call.tool is None:
        message = "Forbidden: a tools/call without a tool name cannot be authorised"
    else:
        data["tool"] = shown(call.tool)
        message = f"Forbidden: no scope rule allows the tool {shown(call.tool)!r} on this server"
    await send_error(send, 403, error_payload(FORBIDDEN_TOOL, message, request_id, data))
