"""``route_path``: the path every path rule matches, the one Starlette's router matches."""

from __future__ import annotations

import pytest
from starlette._utils import get_route_path

from aimiddleware.context import route_path

CASES = [
    # (path, root_path, route path)
    ("/v1/models", "", "/v1/models"),
    ("/api/v1/models", "/api", "/v1/models"),  # Mount("/api") and uvicorn --root-path /api
    ("/v1/models", "/api", "/v1/models"),  # a server that leaves the prefix out of path
    ("/apiv1/models", "/api", "/apiv1/models"),  # shares text with the prefix, not a segment
    ("/api/", "/api", "/"),
    ("/api", "/api", ""),
    ("/a/b/mcp", "/a/b", "/mcp"),  # nested mounts add up in root_path
    ("/api/api/v1", "/api", "/api/v1"),  # stripped once
]


@pytest.mark.parametrize(("path", "root_path", "expected"), CASES)
def test_route_path_is_the_path_without_root_path(path: str, root_path: str, expected: str) -> None:
    scope = {"type": "http", "path": path, "root_path": root_path}
    assert route_path(scope) == expected
    assert route_path(scope) == get_route_path(scope)


def test_a_scope_without_root_path_is_its_path() -> None:
    assert route_path({"type": "http", "path": "/v1/models"}) == "/v1/models"
