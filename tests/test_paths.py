"""The one path grammar every middleware's path options go through."""

from __future__ import annotations

import pytest

from aimiddleware import ConfigurationError
from aimiddleware._paths import PathPattern, PathSet
from aimiddleware.idempotency import IdempotencyMiddleware
from aimiddleware.mcp import MCPOriginMiddleware
from aimiddleware.normalize import NormalizeRoute
from aimiddleware.oauth import ScopeRule
from aimiddleware.ratelimit import RateLimitMiddleware, Tier


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/v1/models", "/v1/models", True),
        ("/v1/models", "/v1/models/", False),
        ("/v1/models", "/v1/modelsx", False),
        ("/v1/*", "/v1/models", True),
        ("/v1/*", "/v1/", True),
        ("/v1/*", "/v1", False),
        ("/mcp*", "/mcp", True),
        ("/mcp*", "/mcpx/y", True),
        ("/*", "/anything/at/all", True),
        ("/v1/models/{model}", "/v1/models/gpt", True),
        ("/v1/models/{model}", "/v1/models/a/b", False),
        ("/v1/models/{model}", "/v1/models/", False),
        ("/v1/{kind}/{id}/x", "/v1/files/7/x", True),
        ("/v1/{kind}/*", "/v1/files/7/x", True),
        ("/v1/{kind}/*", "/v2/files/7", False),
        ("/v1.0/models", "/v1x0/models", False),  # literal text, not a regular expression
    ],
)
def test_pattern_matches(pattern: str, path: str, expected: bool) -> None:
    assert PathPattern(pattern).matches(path) is expected
    assert PathSet([pattern], option="paths").matches(path) is expected


@pytest.mark.parametrize("pattern", ["v1/models", "", "/v1/*/x", "/v1/{1x}", "/v1/{a", 3])
def test_bad_patterns_raise_configuration_error(pattern: object) -> None:
    with pytest.raises(ConfigurationError, match="paths"):
        PathSet([pattern], option="paths")  # type: ignore[list-item]


def test_one_string_is_not_a_list_of_paths() -> None:
    with pytest.raises(ConfigurationError, match="not one string"):
        PathSet("/health", option="exempt_paths")


def test_a_set_matches_when_any_pattern_does() -> None:
    paths = PathSet(["/health", "/v1/*", "/items/{id}"], option="paths")
    assert [paths.matches(p) for p in ("/health", "/v1/x", "/items/3", "/metrics", "")] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert not PathSet([], option="paths")


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ("/mcp", "/mcp", True),
        ("/mcp", "/mcp/sse", True),
        ("/mcp", "/mcpx", False),
        ("/mcp/", "/mcp", True),
        ("/mcp/", "/mcp/a/b", True),
    ],
)
def test_below_covers_a_path_and_its_segments(prefix: str, path: str, expected: bool) -> None:
    assert PathSet.below([prefix], option="paths").matches(path) is expected


@pytest.mark.parametrize(
    ("build", "option"),
    [
        (lambda p: ScopeRule(p, ["chat"]), "rule pattern"),
        (lambda p: NormalizeRoute(p), "route path"),
        (lambda p: IdempotencyMiddleware(None, paths=[p]), "paths"),  # type: ignore[arg-type]
        (lambda p: MCPOriginMiddleware(None, paths=[p]), "paths"),  # type: ignore[arg-type]
        (
            lambda p: RateLimitMiddleware(None, tiers=[Tier("t")], exempt_paths=[p]),  # type: ignore[arg-type]
            "exempt_paths",
        ),
    ],
)
@pytest.mark.parametrize("bad", ["/v1/*/x", "/v1/{model-id}", "v1"])
def test_every_path_option_speaks_the_one_grammar(build: object, option: str, bad: str) -> None:
    with pytest.raises(ConfigurationError, match=option):
        build(bad)  # type: ignore[operator]
