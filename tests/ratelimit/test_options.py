"""The options as one object: keywords or RateLimitOptions, groups, the store= rename, errors."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import httpx
import pytest

from aimiddleware import ConfigurationError, _config
from aimiddleware.context import get_error
from aimiddleware.errors import ErrorInfo
from aimiddleware.ratelimit import (
    CallerOptions,
    RateLimitMiddleware,
    RateLimitOptions,
    Tier,
    TokenEstimates,
)

from .apps import Upstream, chat_body
from .conftest import Keep

pytestmark = pytest.mark.anyio


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which deprecated names were already warned about in this process."""
    monkeypatch.setattr(_config, "_WARNED", set())


def test_storage_still_works_and_warns_once(fresh_warnings: None) -> None:
    url = "memory://?max_keys=10"
    with pytest.warns(DeprecationWarning, match=r"storage=\.\.\.\) is deprecated; use store="):
        first = RateLimitMiddleware(Upstream().app(), tiers=[Tier("t")], storage=url)
    assert first.config.store == url
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = RateLimitMiddleware(Upstream().app(), tiers=[Tier("t")], storage=url)
    assert second.config.store == url


def test_storage_and_store_at_once_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="storage is the old name of store"):
        RateLimitMiddleware(
            Upstream().app(), tiers=[Tier("t")], storage="memory://", store="memory://"
        )


def test_keywords_and_the_object_build_the_same_options() -> None:
    tiers = [Tier("agent", requests="5/minute"), Tier("human", requests="1/minute")]
    by_keywords = RateLimitMiddleware(
        Upstream().app(),
        tiers=tiers,
        default_tier="human",
        trusted_proxies=["10.0.0.0/8"],
        key_by="client",
        chars_per_token=3.0,
    )
    options = RateLimitOptions(
        tiers=tiers,
        default_tier="human",
        callers=CallerOptions(trusted_proxies=["10.0.0.0/8"], key_by="client"),
        token_estimates=TokenEstimates(chars_per_token=3.0),
    )
    assert by_keywords.config == options
    assert RateLimitMiddleware(Upstream().app(), options).config is options
    assert RateLimitMiddleware(Upstream().app(), config=options).config is options
    assert options.callers.trusted_proxies == ("10.0.0.0/8",)
    assert options.tiers == tuple(tiers)


def test_the_options_are_frozen() -> None:
    options = RateLimitOptions(tiers=[Tier("t")])
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.timeout = 2.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.callers.key_by = "client"  # type: ignore[misc]


@pytest.mark.parametrize(
    "extra",
    [
        {"timeout": 2.0},  # an option beside the object
        {"trusted_proxies": ["10.0.0.0/8"]},  # a group's option beside the object
    ],
)
def test_the_object_and_keywords_at_once_are_refused(extra: dict[str, Any]) -> None:
    options = RateLimitOptions(tiers=[Tier("t")])
    with pytest.raises(ConfigurationError, match="pass config= or options, not both"):
        RateLimitMiddleware(Upstream().app(), options, **extra)


def test_a_group_and_its_options_at_once_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="chars_per_token belong to token_estimates="):
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t")],
            token_estimates=TokenEstimates(),
            chars_per_token=3.0,
        )


def test_config_must_be_rate_limit_options() -> None:
    with pytest.raises(ConfigurationError, match="config must be a RateLimitOptions"):
        RateLimitMiddleware(Upstream().app(), {"tiers": [Tier("t")]})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("timeout", 0),
        ("timeout", True),
        ("concurrency_lease", -1),
        ("chars_per_token", 0),
        ("default_completion_tokens", -1),
        ("default_completion_tokens", 1.5),
        ("tokens_per_message", -1),
        ("tokens_per_message", 2.5),
        ("tokens_per_request", -1),
        ("tokens_per_request", True),
        ("max_request_bytes", 0),
        ("strategy", "leaky"),
        ("on_store_error", "maybe"),
        ("key_by", "team"),
        ("key_prefix", 7),
        ("store", ""),
        ("exempt_paths", "/health"),  # one string, not a list of one
        ("trusted_proxies", "10.0.0.1"),
        ("client_type_trusted_from", [None]),
        ("overrides", 1),
        ("callers", {"key_by": "client"}),
    ],
)
def test_a_bad_value_is_refused_naming_its_option(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=option):
        RateLimitMiddleware(Upstream().app(), tiers=[Tier("t")], **{option: value})


async def test_caller_options_given_as_a_group_identify_callers(closing: Keep) -> None:
    options = RateLimitOptions(
        tiers=[Tier("t", requests="1/minute")],
        callers=CallerOptions(trusted_proxies=["10.0.0.0/8"]),
    )
    limited = closing(RateLimitMiddleware(Upstream().app(), options))
    transport = httpx.ASGITransport(app=limited, client=("10.0.0.5", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        codes = [
            (await http.get("/ping", headers={"x-forwarded-for": address})).status_code
            for address in ("203.0.113.1", "203.0.113.2", "203.0.113.1")
        ]
    # behind the trusted proxy each forwarded address has its own budget
    assert codes == [200, 200, 429]


async def test_token_estimates_given_as_a_group_size_the_reservation(closing: Keep) -> None:
    options = RateLimitOptions(
        tiers=[Tier("t", tokens="1000/minute")],
        token_estimates=TokenEstimates(
            default_completion_tokens=100, tokens_per_message=4, tokens_per_request=7
        ),
    )
    limited = closing(RateLimitMiddleware(Upstream().app(), options))
    body = chat_body(content="x" * 40)
    del body["max_tokens"]
    async with client(limited) as http:
        answer = await http.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200
    # reserved: 40 characters / 4 per token, 4 for the one message and 7 for the request, and
    # the default completion of 100 tokens
    assert answer.headers["x-ratelimit-remaining-tokens"] == str(1000 - (10 + 4 + 7) - 100)


async def test_a_429_as_problem_details_when_accept_prefers_them(closing: Keep) -> None:
    limited = closing(RateLimitMiddleware(Upstream().app(), tiers=[Tier("t", requests="1/minute")]))
    async with client(limited) as http:
        await http.get("/ping")
        rejected = await http.get("/ping", headers={"accept": "application/problem+json"})
        plain = await http.get("/ping", headers={"x-request-id": "req-7"})
    assert rejected.status_code == 429
    assert rejected.headers["content-type"] == "application/problem+json"
    problem = rejected.json()
    assert problem["status"] == 429
    assert problem["code"] == "rate_limit_exceeded"
    assert problem["error_type"] == "requests"
    assert "requests per 1m0s" in problem["detail"]
    assert int(rejected.headers["retry-after"]) >= 1
    assert rejected.headers["ratelimit-policy"] == '"requests";q=1;w=60'
    # the OpenAI envelope otherwise, with the request id every error of the library carries
    assert plain.json()["error"]["type"] == "requests"
    assert plain.headers["x-request-id"] == "req-7"


async def test_a_413_as_the_library_writes_errors(closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(), tiers=[Tier("t", tokens="1000/minute")], max_request_bytes=64
        )
    )
    async with client(limited) as http:
        refused = await http.post("/v1/chat/completions", json=chat_body(content="x" * 100))
    assert refused.status_code == 413
    assert refused.json() == {
        "error": {
            "message": "The request body is larger than 64 bytes.",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_too_large",
        }
    }
    assert "x-request-id" in refused.headers


async def test_the_503_is_recorded_for_an_outer_normalize(closing: Keep, dead_port: int) -> None:
    limited = closing(
        RateLimitMiddleware(
            Upstream().app(),
            tiers=[Tier("t", requests="1/minute")],
            store=f"redis://127.0.0.1:{dead_port}/0",
            timeout=0.3,
            on_store_error="closed",
        )
    )
    seen: list[Any] = []

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        await limited(scope, receive, send)
        seen.append(get_error(scope))

    async with client(outer) as http:
        response = await http.get("/ping")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["code"] == "rate_limiter_unavailable"
    assert error["message"] == "The rate limiter is unavailable; please try again shortly."
    # an outer NormalizeMiddleware keeps a recorded error as it is instead of a generic 503
    assert isinstance(seen[0], ErrorInfo)
    assert (seen[0].status, seen[0].code) == (503, "rate_limiter_unavailable")
