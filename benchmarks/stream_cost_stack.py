"""Per-chunk and per-request cost in process, with the full stack among the configurations.

    python -m benchmarks.stream_cost_stack --requests 2000

Runs ``benchmarks.stream_cost`` (each middleware's own factories) with one more configuration,
``stack``: the six middlewares on the memory stores, as :func:`configs_stack.build_stack`
assembles them. That script drives apps directly with a bare request (no credentials, no
idempotency key), so the stack gets them from a thin outer shim, the way a client would send
them: the bearer API key and a fresh ``Idempotency-Key`` on every request, so that every stream
is recorded. Where the stack cannot be built yet, the script runs without it and says why.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from .apps import ASGIApp, missing
from .configs_stack import STACK_HEADERS, STACK_MODULES, build_stack

# what stream_cost's bare scope lacks and a server would always set
_SCOPE_DEFAULTS: dict[str, Any] = {
    "scheme": "http",
    "query_string": b"",
    "root_path": "",
    "client": ("127.0.0.1", 40000),
    "server": ("127.0.0.1", 8000),
}
_HEADERS = [(k.lower().encode(), v.encode()) for k, v in STACK_HEADERS.items()]


def as_client(app: ASGIApp) -> ASGIApp:
    """``app`` reached as a client of the stack calls it: API key and a fresh idempotency key."""

    async def shim(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**_SCOPE_DEFAULTS, **scope}
            scope.setdefault("raw_path", scope["path"].encode())
            key = (b"idempotency-key", uuid.uuid4().hex.encode())
            scope["headers"] = [*scope.get("headers", ()), *_HEADERS, key]
        await app(scope, receive, send)

    return shim


def stack_factory(app: ASGIApp) -> ASGIApp:
    """The full stack on the memory stores around ``app``, called as a client would."""
    return as_client(build_stack(app, store_url="memory://"))


def main(argv: list[str] | None = None) -> None:
    try:
        from . import stream_cost
    except ImportError as exc:
        raise SystemExit(f"benchmarks/stream_cost.py is not available: {exc}") from exc
    reason = missing(STACK_MODULES)
    if reason is None:
        if "stack" not in stream_cost.FACTORIES:
            stream_cost.register("stack", stack_factory)
    else:
        print(f"# stack: {reason}", flush=True)
    stream_cost.main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
