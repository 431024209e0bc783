"""The Responses API: tokens reserved from ``max_output_tokens``, settled from the usage of its
final event (or of the response object), and the request never rewritten."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aimiddleware.ratelimit import RateLimitMiddleware, Tier
from testkit.openai_app import Counter
from testkit.responses_app import RESPONSES_PATH, response_events, responses_app

from .apps import body_of, call_raw, headers_of, status_of
from .conftest import Keep

pytestmark = pytest.mark.anyio


# 40 characters of input in one item: 10 tokens, 6 for the item's message and 25 for the request
# (the default TokenEstimates), so the reservation is 41 + max_output_tokens
PROMPT = 40 // 4 + 6 + 25


def responses_body(*, stream: bool = False, max_output_tokens: int = 90) -> dict[str, Any]:
    return {
        "model": "m",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "x" * 40}]}],
        "max_output_tokens": max_output_tokens,
        "stream": stream,
    }


async def remaining_after(limited: RateLimitMiddleware) -> int:
    """The tokens left once one more request (reserving PROMPT + 90) is admitted."""
    sent = await call_raw(limited, responses_body(), path=RESPONSES_PATH)
    return int(headers_of(sent)["x-ratelimit-remaining-tokens"])


async def test_a_stream_is_settled_from_its_completed_usage_and_never_rewritten(
    store: str, prefix: str, closing: Keep
) -> None:
    received: list[bytes] = []
    app = responses_app(Counter(), usage=(12, 7), received=received)
    limited = closing(
        RateLimitMiddleware(
            app, tiers=[Tier("t", tokens="1000/minute")], store=store, key_prefix=prefix
        )
    )
    body = responses_body(stream=True)
    sent = await call_raw(limited, body, path=RESPONSES_PATH)

    assert status_of(sent) == 200
    assert headers_of(sent)["x-ratelimit-remaining-tokens"] == str(1000 - (PROMPT + 90))
    # the app got the request as the client wrote it: no stream_options asked for
    assert received[0] == json.dumps(body).encode()
    # and the client got the app's stream byte for byte, usage included
    expected = response_events(["Hel", "lo", "!"], id="resp_1", usage=(12, 7))
    assert body_of(sent) == b"".join(expected)
    assert sent[-1]["more_body"] is False
    # the stream was charged its stated usage (19), not the reservation (131)
    assert await remaining_after(limited) == 1000 - 19 - (PROMPT + 90)


async def test_a_json_response_is_settled_from_its_usage(prefix: str, closing: Keep) -> None:
    limited = closing(
        RateLimitMiddleware(
            responses_app(Counter(), usage=(30, 4)),
            tiers=[Tier("t", tokens="1000/minute")],
            key_prefix=prefix,
        )
    )
    sent = await call_raw(limited, responses_body(), path=RESPONSES_PATH)
    assert json.loads(body_of(sent))["usage"]["total_tokens"] == 34
    assert await remaining_after(limited) == 1000 - 34 - (PROMPT + 90)


async def test_max_output_tokens_is_what_is_reserved(prefix: str, closing: Keep) -> None:
    counter = Counter()
    limited = closing(
        RateLimitMiddleware(
            responses_app(counter),
            tiers=[Tier("t", tokens="100/minute")],
            key_prefix=prefix,
        )
    )
    # 41 prompt + 90 output tokens cannot fit in 100: refused before the app runs
    refused = await call_raw(limited, responses_body(max_output_tokens=90), path=RESPONSES_PATH)
    assert status_of(refused) == 429
    assert json.loads(body_of(refused))["error"]["code"] == "rate_limit_exceeded"
    assert counter.runs == 0
    # 41 + 40 fits
    admitted = await call_raw(limited, responses_body(max_output_tokens=40), path=RESPONSES_PATH)
    assert status_of(admitted) == 200
    assert headers_of(admitted)["x-ratelimit-remaining-tokens"] == str(100 - (PROMPT + 40))
    assert counter.runs == 1


async def test_a_stream_cut_by_a_failure_pays_the_prompt_and_the_deltas_sent(
    prefix: str, closing: Keep
) -> None:
    # four events went out (created, in progress, the item and its part), then two deltas
    app = responses_app(Counter(), deltas=["a", "b", "c", "d"], fail_after=6)
    limited = closing(
        RateLimitMiddleware(app, tiers=[Tier("t", tokens="1000/minute")], key_prefix=prefix)
    )
    with pytest.raises(RuntimeError):
        await call_raw(limited, responses_body(stream=True), path=RESPONSES_PATH)
    # the prompt's estimate and the two deltas
    assert await remaining_after(limited) == 1000 - (PROMPT + 2) - (PROMPT + 90)
