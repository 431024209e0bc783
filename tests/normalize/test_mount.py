"""Routes match the route path: a route's error format holds under a prefix too."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aimiddleware.normalize import NormalizeMiddleware, NormalizeRoute

from ..mounts import WAYS, client_for

pytestmark = pytest.mark.anyio


async def missing(request: Request) -> Response:
    return JSONResponse({"detail": "no such model"}, status_code=404)


async def mcp(request: Request) -> Response:
    return JSONResponse({"custom": True}, status_code=400)


def normalised() -> NormalizeMiddleware:
    app = Starlette(routes=[Route("/v1/models/{model}", missing), Route("/mcp", mcp)])
    routes = [
        NormalizeRoute("/v1/models/{model}", format="problem"),
        NormalizeRoute("/mcp", format="passthrough"),
    ]
    return NormalizeMiddleware(app, routes=routes)


@pytest.mark.parametrize("way", WAYS)
async def test_route_formats_apply_under_a_prefix(way: str) -> None:
    async with client_for(normalised(), way) as client:
        problem = await client.get("/v1/models/gpt-9")
        untouched = await client.get("/mcp")
    assert problem.status_code == 404
    assert problem.headers["content-type"] == "application/problem+json"
    assert problem.json()["detail"] == "no such model"
    assert untouched.status_code == 400
    assert untouched.json() == {"custom": True}
