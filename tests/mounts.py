"""One app reached the ways a deployment puts it behind a prefix, for the path-rule tests.

* ``direct``: the app is the server's app, ``root_path`` empty.
* ``mount``: ``Starlette(routes=[Mount("/api", app=app)])``; the app sees
  ``path="/api/v1/..."``, ``root_path="/api"``.
* ``root_path``: ``uvicorn --root-path /api`` behind a proxy that strips ``/api``: uvicorn puts
  the prefix back in front of the path, so the app sees the same scope as under the mount.
* ``root_path_only``: a server that sets ``root_path`` without putting it in ``path`` (the
  scope older servers build); the route path is then the path as it is.

In every way a client's request to ``<prefix>/v1/models`` reaches the route ``/v1/models``,
and every path rule of the library must match exactly as it does directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

__all__ = ["PREFIX", "WAYS", "client_for", "reached"]

PREFIX = "/api"
WAYS = ("direct", "mount", "root_path", "root_path_only")


def reached(app: Any, way: str, prefix: str = PREFIX) -> tuple[Any, str, str]:
    """The server's app, the ``root_path`` the server sets, and the prefix the URL carries."""
    if way == "direct":
        return app, "", ""
    if way == "mount":
        return Starlette(routes=[Mount(prefix, app=app)]), "", prefix
    if way == "root_path":
        return app, prefix, prefix
    if way == "root_path_only":
        return app, prefix, ""
    raise ValueError(way)


@contextlib.asynccontextmanager
async def client_for(
    app: Any,
    way: str,
    *,
    prefix: str = PREFIX,
    base_url: str = "http://testserver",
    **transport: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose relative URLs (``"/v1/models"``) reach ``app``'s routes in ``way``."""
    server_app, root_path, prefix = reached(app, way, prefix)
    asgi = httpx.ASGITransport(app=server_app, root_path=root_path, **transport)
    async with httpx.AsyncClient(transport=asgi, base_url=base_url + prefix) as client:
        yield client
