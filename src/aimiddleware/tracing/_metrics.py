"""The instruments the middleware records into, created once per middleware."""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import Histogram, Meter, MeterProvider

from . import _semconv as sc


def _histogram(meter: Meter, spec: tuple[str, str, str, tuple[float, ...]]) -> Histogram:
    name, unit, description, buckets = spec
    return meter.create_histogram(
        name,
        unit=unit,
        description=description,
        explicit_bucket_boundaries_advisory=list(buckets),
    )


class Instruments:
    """HTTP and GenAI server histograms with the conventions' names, units and buckets."""

    __slots__ = ("http_duration", "llm_duration", "time_per_output_token", "tokens", "ttft")

    def __init__(self, meter_provider: MeterProvider | None, version: str) -> None:
        meter = metrics.get_meter("aimiddleware.tracing", version, meter_provider)
        self.http_duration = _histogram(meter, sc.HTTP_SERVER_REQUEST_DURATION)
        self.llm_duration = _histogram(meter, sc.GEN_AI_SERVER_REQUEST_DURATION)
        self.ttft = _histogram(meter, sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
        self.time_per_output_token = _histogram(meter, sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN)
        self.tokens = _histogram(meter, sc.GEN_AI_TOKEN_USAGE)

    def record_llm(
        self,
        attributes: dict[str, Any],
        *,
        duration: float,
        ttft: float | None,
        input_tokens: int | None,
        output_tokens: int | None,
        failed: bool,
    ) -> None:
        """Record one LLM request; ``attributes`` are the GenAI metric attributes."""
        self.llm_duration.record(duration, attributes)
        # the conventions keep the latency of tokens to successful responses
        if not failed and ttft is not None:
            self.ttft.record(ttft, attributes)
            if output_tokens is not None and output_tokens > 1:
                self.time_per_output_token.record(
                    (duration - ttft) / (output_tokens - 1), attributes
                )
        if input_tokens is not None:
            self.tokens.record(input_tokens, {**attributes, sc.GEN_AI_TOKEN_TYPE: "input"})
        if output_tokens is not None:
            self.tokens.record(output_tokens, {**attributes, sc.GEN_AI_TOKEN_TYPE: "output"})
