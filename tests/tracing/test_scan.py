from __future__ import annotations

from time import perf_counter

import pytest

from aimiddleware.tracing._scan import BodyScan, StreamScan

from .apps import WORDS, stream_events


def whole_stream() -> bytes:
    return b"".join(stream_events())


def scan_of(chunks: list[bytes]) -> StreamScan:
    scan = StreamScan(started=perf_counter())
    for piece in chunks:
        scan.feed(piece)
    return scan


@pytest.mark.parametrize("size", [1, 7, 64, 10_000])
def test_any_split_of_the_stream_gives_the_same_facts(size: int) -> None:
    data = whole_stream()
    scan = scan_of([data[i : i + size] for i in range(0, len(data), size)])
    response = scan.response
    assert response.id == "chatcmpl-42"
    assert response.finish_reasons == ["stop"]
    assert (response.input_tokens, response.output_tokens) == (12, len(WORDS))
    assert response.done
    assert scan.ttft is not None


def test_usage_and_finish_reason_are_found_in_chunks_holding_several_events() -> None:
    events = stream_events()
    # the first event alone, then everything else in two chunks of several whole events
    scan = scan_of([events[0], b"".join(events[1:4]), b"".join(events[4:])])
    assert scan.response.finish_reasons == ["stop"]
    assert scan.response.output_tokens == len(WORDS)


def test_finish_reasons_of_several_choices_are_all_seen() -> None:
    first = b'data: {"id": "x", "choices": [{"index": 0, "delta": {"content": "a"}}]}\n\n'
    both = (
        b'data: {"choices": [{"index": 0, "finish_reason": null}, '
        b'{"index": 1, "finish_reason": "length"}]}\n\n'
    )
    scan = scan_of([first, both])
    assert scan.response.finish_reasons == ["length"]


def test_an_error_event_after_the_first_chunk_is_seen() -> None:
    first = b'data: {"id": "x", "choices": [{"delta": {"content": "a"}}]}\n\n'
    scan = scan_of([first, b'data: {"error": {"message": "overloaded"}}\n\n'])
    assert scan.response.error


def test_content_that_quotes_the_markers_does_not_confuse_the_scan() -> None:
    first = b'data: {"id": "x", "choices": [{"delta": {"content": "a"}}]}\n\n'
    sneaky = (
        b'data: {"choices": [{"delta": {"content": "\\"usage\\": 99"}, "finish_reason": null}]}\n\n'
    )
    scan = scan_of([first, sneaky])
    assert scan.response.input_tokens is None
    assert scan.response.finish_reasons == []


def test_a_body_scan_reads_json_and_gives_up_past_its_limit() -> None:
    body = b'{"id": "c", "choices": [{"finish_reason": "stop"}], "usage": {"prompt_tokens": 3}}'
    scan = BodyScan(limit=1000)
    scan.feed(body[:10])
    scan.feed(body[10:])
    result = scan.result()
    assert result is not None
    assert result.id == "c"
    assert result.input_tokens == 3

    small = BodyScan(limit=10)
    small.feed(body)
    assert small.result() is None


def test_null_usage_in_every_delta_does_not_hide_the_real_usage() -> None:
    # OpenAI writes "usage": null into every delta when stream_options.include_usage is set
    first = b'data: {"id": "x", "choices": [{"delta": {"content": "a"}}], "usage": null}\n\n'
    delta = (
        b'data: {"choices": [{"delta": {"content": "b"}, "finish_reason":null}], "usage":null}\n\n'
    )
    usage = b'data: {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}\n\n'
    scan = scan_of([first, delta, delta, usage])
    assert (scan.response.input_tokens, scan.response.output_tokens) == (4, 2)


@pytest.mark.parametrize(
    "news",
    [
        b'"finish_reason":"stop"',
        b'"finish_reason" : "stop"',
        b'"finish_reason":\t"stop"',
        b'"finish_reason": "stop", "usage": null',
    ],
)
def test_a_finish_reason_is_seen_whatever_the_spacing_around_its_colon(news: bytes) -> None:
    first = b'data: {"id": "x", "choices": [{"delta": {"content": "a"}}]}\n\n'
    last = b'data: {"choices": [{"delta": {}, ' + news + b"}]}\n\n"
    scan = scan_of([first, last])
    assert scan.response.finish_reasons == ["stop"]


def test_deltas_whose_news_keys_are_all_null_are_passed_over_unparsed() -> None:
    first = b'data: {"id": "x", "choices": [{"delta": {"content": "a"}}]}\n\n'
    delta = b'data: {"choices": [{"delta": {"content": "b"}, "finish_reason":  null}], '
    delta += b'"usage": null, "error": null}\n\n'
    scan = scan_of([first, delta])
    # a parsed delta would have counted as a second chunk carrying choices
    assert scan.response.chunks == 1
    assert scan.response.finish_reasons == []
