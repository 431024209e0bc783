"""The instruments the middleware records into, created once per middleware.

Metric attributes take few values (method, route template, status, model, error type), so each
combination's attribute dicts are built once and reused: a request only looks its set up. The
SDK still cleans and hashes what it is given on every record (see ``docs/tracing.md``,
"Cost"), which is why each request records only the instruments the conventions call for.
"""

from __future__ import annotations

from typing import Any, Final

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram, Meter, MeterProvider, NoOpHistogram

from .._lru import Memo
from . import _semconv as sc

# distinct attribute sets kept per kind; past it (a client sending ever new model names) the
# sets are built per request and not kept, so memory stays bounded
CACHE_CAP: Final = 1024

Attributes = dict[str, Any]
HTTPKey = tuple[str, str, str | None, int, str | None, str | None]
LLMKey = tuple[str, str, str | None, str | None, str | None]


def _histogram(meter: Meter, spec: tuple[str, str, str, tuple[float, ...]]) -> Histogram:
    name, unit, description, buckets = spec
    return meter.create_histogram(
        name,
        unit=unit,
        description=description,
        explicit_bucket_boundaries_advisory=list(buckets),
    )


def _http_attributes(key: HTTPKey) -> Attributes:
    method, scheme, version, status, route, error_type = key
    attributes: Attributes = {sc.HTTP_REQUEST_METHOD: method, sc.URL_SCHEME: scheme}
    if version:
        attributes[sc.NETWORK_PROTOCOL_VERSION] = version
    if status:
        attributes[sc.HTTP_RESPONSE_STATUS_CODE] = status
    if route is not None:
        attributes[sc.HTTP_ROUTE] = route
    if error_type is not None:
        attributes[sc.ERROR_TYPE] = error_type
    return attributes


def _llm_attributes(key: LLMKey) -> tuple[Attributes, Attributes, Attributes]:
    operation, provider, request_model, response_model, error_type = key
    attributes: Attributes = {
        sc.GEN_AI_OPERATION_NAME: operation,
        sc.GEN_AI_PROVIDER_NAME: provider,
    }
    if request_model is not None:
        attributes[sc.GEN_AI_REQUEST_MODEL] = request_model
    if response_model is not None:
        attributes[sc.GEN_AI_RESPONSE_MODEL] = response_model
    if error_type is not None:
        attributes[sc.ERROR_TYPE] = error_type
    return (
        attributes,
        {**attributes, sc.GEN_AI_TOKEN_TYPE: "input"},
        {**attributes, sc.GEN_AI_TOKEN_TYPE: "output"},
    )


class Instruments:
    """HTTP and GenAI server histograms with the conventions' names, units and buckets.

    ``previous``: record the previous release's token histogram (``gen_ai.client.token.usage``)
    besides the current ones (``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai/dup``).

    >>> from opentelemetry.metrics import NoOpMeterProvider
    >>> instruments = Instruments(NoOpMeterProvider(), "0")
    >>> instruments.http_attributes(("GET", "https", "1.1", 200, "/v1/models", None))
    {'http.request.method': 'GET', 'url.scheme': 'https', 'network.protocol.version': '1.1', \
'http.response.status_code': 200, 'http.route': '/v1/models'}
    """

    __slots__ = (
        "_http",
        "_llm",
        "_records",
        "http_duration",
        "input_tokens",
        "llm_duration",
        "output_tokens",
        "time_per_output_token",
        "token_usage",
        "ttft",
    )

    def __init__(
        self, meter_provider: MeterProvider | None, version: str, *, previous: bool = False
    ) -> None:
        meter = metrics.get_meter("aimiddleware.tracing", version, meter_provider)
        self.http_duration = _histogram(meter, sc.HTTP_SERVER_REQUEST_DURATION)
        self.llm_duration = _histogram(meter, sc.GEN_AI_SERVER_REQUEST_DURATION)
        self.ttft = _histogram(meter, sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
        self.time_per_output_token = _histogram(meter, sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN)
        self.input_tokens = _histogram(meter, sc.GEN_AI_INPUT_TOKENS)
        self.output_tokens = _histogram(meter, sc.GEN_AI_OUTPUT_TOKENS)
        self.token_usage = _histogram(meter, sc.GEN_AI_TOKEN_USAGE) if previous else None
        # True: an SDK's instruments; False: the API's no-op ones; None: the API's proxies,
        # which record once an SDK's meter provider is set globally (looked at per request)
        probe = self.http_duration
        self._records: bool | None = (
            None if hasattr(probe, "_real_instrument") else not isinstance(probe, NoOpHistogram)
        )
        # never mutated once built: the SDK copies what it keeps
        self._http: Memo[HTTPKey, Attributes] = Memo(_http_attributes, CACHE_CAP)
        self._llm: Memo[LLMKey, tuple[Attributes, Attributes, Attributes]] = Memo(
            _llm_attributes, CACHE_CAP
        )

    def recording(self) -> bool:
        """Whether a record would reach an SDK (``False`` on the API alone)."""
        records = self._records
        if records is None:
            return getattr(self.http_duration, "_real_instrument", None) is not None
        return records

    def http_attributes(self, key: HTTPKey) -> Attributes:
        """The ``http.server.request.duration`` attributes of (method, scheme, protocol
        version, status, route, error type)."""
        return self._http(key)

    def record_http(self, duration: float, key: HTTPKey, context: Context) -> None:
        """Record one HTTP request's duration."""
        self.http_duration.record(duration, self._http(key), context)

    def record_llm(
        self,
        key: LLMKey,
        context: Context,
        duration: float,
        ttft: float | None,
        input_tokens: int | None,
        output_tokens: int | None,
    ) -> None:
        """Record one LLM request: ``key`` is (operation, provider, request model, response
        model, error type)."""
        sets = self._llm(key)
        attributes = sets[0]
        self.llm_duration.record(duration, attributes, context)
        # the conventions keep the latency of tokens to successful responses
        if ttft is not None and key[4] is None:
            self.ttft.record(ttft, attributes, context)
            if output_tokens is not None and output_tokens > 1:
                self.time_per_output_token.record(
                    (duration - ttft) / (output_tokens - 1), attributes, context
                )
        previous = self.token_usage
        if input_tokens is not None:
            self.input_tokens.record(input_tokens, attributes, context)
            if previous is not None:
                previous.record(input_tokens, sets[1], context)
        if output_tokens is not None:
            self.output_tokens.record(output_tokens, attributes, context)
            if previous is not None:
                previous.record(output_tokens, sets[2], context)
