"""Helpers of the MCP tests: a request scope for `/mcp` and a JSON-RPC body (the recorded
exchange is :mod:`tests.asgi`'s)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aimiddleware import Principal
from aimiddleware.context import Scope

from .. import asgi
from ..asgi import Exchange as Exchange
from ..asgi import recording_app as recording_app
from ..asgi import run as run


def http_scope(
    method: str = "POST",
    path: str = "/mcp",
    headers: Iterable[tuple[bytes, bytes]] = (),
    principal: Principal | None = None,
) -> Scope:
    return asgi.http_scope(
        method,
        path,
        [(b"host", b"testserver"), *headers],
        principal,
        client=("127.0.0.1", 5000),
        server=("testserver", 80),
    )


def rpc(method: str, params: dict[str, Any] | None = None, id: int | str = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()
