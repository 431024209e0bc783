"""An answer without usage is charged its reservation, marked, and warned about once per route."""

from __future__ import annotations

import json
import logging

import pytest

from aimiddleware._lru import LRUCache
from aimiddleware.context import get_annotations
from aimiddleware.ratelimit import RateLimitMiddleware, Tier, _usage_missing

from ..asgi import http_scope, request_receive
from .apps import CHAT_PROMPT, Upstream, chat_body, headers_of
from .conftest import Keep

pytestmark = pytest.mark.anyio

MISSING = "aimiddleware.ratelimit.usage_missing"


async def answer(app: RateLimitMiddleware, body: dict, path: str = "/v1/chat/completions"):  # type: ignore[type-arg]
    sent: list[dict] = []  # type: ignore[type-arg]

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        sent.append(message)

    scope = http_scope(path=path, headers=[(b"content-type", b"application/json")])
    await app(scope, request_receive(json.dumps(body).encode()), send)
    return scope, sent


def limiter(upstream: Upstream, closing: Keep) -> RateLimitMiddleware:
    return closing(RateLimitMiddleware(upstream.app(), tiers=[Tier("t", tokens="1000/minute")]))


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    # the warning is once per route and process: each test starts with none written
    monkeypatch.setattr(_usage_missing, "_WARNED", LRUCache("usage warnings", 1024))


# a stream is charged the prompt's estimate (41) and a token per chunk (3 + the last);
# a JSON answer its reservation (41 + 90)
@pytest.mark.parametrize(
    ("stream", "charged"), [(True, CHAT_PROMPT + 4), (False, CHAT_PROMPT + 90)]
)
async def test_an_answer_without_usage_is_charged_an_estimate_and_marked(
    stream: bool, charged: int, closing: Keep, caplog: pytest.LogCaptureFixture
) -> None:
    limited = limiter(Upstream(states_usage=False), closing)
    with caplog.at_level(logging.WARNING, logger="aimiddleware.ratelimit"):
        scope, _ = await answer(limited, chat_body(stream=stream, max_tokens=90))
        again, sent = await answer(limited, chat_body(stream=stream, max_tokens=90))
    assert get_annotations(scope)[MISSING] is True
    assert get_annotations(again)[MISSING] is True
    # the second started after the first was settled, and reserved 131 of its own
    assert headers_of(sent)["x-ratelimit-remaining-tokens"] == str(
        1000 - charged - (CHAT_PROMPT + 90)
    )
    warnings = [r for r in caplog.records if "without stating its usage" in r.getMessage()]
    assert len(warnings) == 1  # once per route, however many answers
    assert "/v1/chat/completions" in warnings[0].getMessage()
    assert f"estimate of {charged} tokens" in warnings[0].getMessage()


async def test_an_answer_with_usage_is_not_marked(
    closing: Keep, caplog: pytest.LogCaptureFixture
) -> None:
    limited = limiter(Upstream(), closing)
    with caplog.at_level(logging.WARNING, logger="aimiddleware.ratelimit"):
        streamed, _ = await answer(limited, chat_body(stream=True, max_tokens=90))
        plain, _ = await answer(limited, chat_body(max_tokens=90))
    assert MISSING not in get_annotations(streamed)
    assert MISSING not in get_annotations(plain)
    assert not [r for r in caplog.records if "without stating its usage" in r.getMessage()]


async def test_a_failed_answer_is_not_marked(closing: Keep) -> None:
    limited = limiter(Upstream(states_usage=False), closing)
    scope, sent = await answer(limited, chat_body(fail=True))
    assert sent[0]["status"] == 500
    assert MISSING not in get_annotations(scope)
