"""What a finished request leaves behind: its span's last attributes and its measurements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Status, StatusCode

from .._openai import LLMResponse
from ..context import get_annotations, get_principal, json_body
from . import _semconv as sc
from ._content import INPUT_MESSAGES, OUTPUT_MESSAGES, as_attribute, input_messages
from ._usage import USAGE_REPLAYED

if TYPE_CHECKING:
    from ._exchange import Exchange

__all__ = ["annotate_span", "record_metrics"]

# the annotation names OAuthMiddleware writes; a principal another auth put in the context is
# recorded under them
PRINCIPAL_ID = "aimiddleware.auth.principal"
PRINCIPAL_CLIENT_ID = "aimiddleware.auth.client_id"
PRINCIPAL_TIER = "aimiddleware.auth.tier"
PRINCIPAL_SCOPES = "aimiddleware.auth.scopes"


def annotate_span(
    exchange: Exchange,
    exc: BaseException | None,
    error_type: str | None,
    route: str | None,
    response: LLMResponse | None,
    ttft: float | None,
) -> None:
    """Set the attributes known at the end (status, route, GenAI, principal, annotations) and
    the span's status."""
    # one dict, one set_attributes: the SDK takes its lock and cleans values once
    span = exchange.span
    attributes: dict[str, Any] = {}
    if exchange.status:
        attributes[sc.HTTP_RESPONSE_STATUS_CODE] = exchange.status
    if route is not None:
        attributes[sc.HTTP_ROUTE] = route
        span.update_name(f"{exchange.method} {route}")
    if exchange.operation is not None:
        attributes[sc.GEN_AI_OPERATION_NAME] = exchange.operation
        attributes[sc.GEN_AI_PROVIDER_NAME] = exchange.config.provider_name
        if exchange.scope.get("path", "").endswith("/responses"):
            attributes[sc.OPENAI_API_TYPE] = "responses"  # its operation is "chat" too
        llm = exchange.llm
        if llm is not None:
            if llm.model is not None:
                attributes[sc.GEN_AI_REQUEST_MODEL] = llm.model
            if llm.max_tokens is not None:
                attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] = llm.max_tokens
            if llm.temperature is not None:
                attributes[sc.GEN_AI_REQUEST_TEMPERATURE] = llm.temperature
            if llm.top_p is not None:
                attributes[sc.GEN_AI_REQUEST_TOP_P] = llm.top_p
            if llm.stream:  # the conventions: set if and only if the request streams
                attributes[sc.GEN_AI_REQUEST_STREAM] = True
        if response is not None:
            if response.id is not None:
                attributes[sc.GEN_AI_RESPONSE_ID] = response.id
            if response.model is not None:
                attributes[sc.GEN_AI_RESPONSE_MODEL] = response.model
            if response.finish_reasons:
                # a tuple of str: the SDK keeps it as it is instead of converting a list
                attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] = tuple(response.finish_reasons)
        usage = exchange.usage
        if usage.input_tokens is not None:
            attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
        if usage.output_tokens is not None:
            attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
        if usage.replayed:
            attributes[USAGE_REPLAYED] = True
        if ttft is not None:
            attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = ttft
        if exchange.config.capture_content:
            _content(exchange, attributes, exchange.operation)
    principal = get_principal(exchange.scope)
    if principal is not None:
        # what an auth middleware did not annotate itself, in the names OAuthMiddleware uses
        attributes[PRINCIPAL_ID] = principal.id
        if principal.client_id is not None:
            attributes[PRINCIPAL_CLIENT_ID] = principal.client_id
        if principal.tier is not None:
            attributes[PRINCIPAL_TIER] = principal.tier
        if principal.scopes:
            attributes[PRINCIPAL_SCOPES] = " ".join(sorted(principal.scopes))
    annotations = get_annotations(exchange.scope)
    if annotations:
        attributes.update(annotations)
    if error_type is not None:
        attributes[sc.ERROR_TYPE] = error_type
    span.set_attributes(attributes)
    if exc is not None:
        span.record_exception(exc)
    if error_type is not None:
        description = None if exc is None else f"{type(exc).__name__}: {exc}"
        span.set_status(Status(StatusCode.ERROR, description or error_type))


def _content(exchange: Exchange, attributes: dict[str, Any], operation: str) -> None:
    limit = exchange.config.content_limit
    prompt = as_attribute(input_messages(operation, json_body(exchange.scope), limit))
    if prompt is not None:
        attributes[INPUT_MESSAGES] = prompt
    if exchange.collector is not None:
        output = as_attribute(exchange.collector.messages())
        if output is not None:
            attributes[OUTPUT_MESSAGES] = output


def record_metrics(
    exchange: Exchange,
    error_type: str | None,
    route: str | None,
    response: LLMResponse | None,
    ttft: float | None,
    duration: float,
) -> None:
    """Record the request's HTTP measurements, and on LLM routes its GenAI ones."""
    scope = exchange.scope
    instruments = exchange.config.instruments
    # the context the measurements are made in, looked up once rather than per record
    current = otel_context.get_current()
    instruments.record_http(
        duration,
        (
            exchange.method,
            scope.get("scheme", "http"),
            scope.get("http_version"),
            exchange.status,
            route,
            error_type,
        ),
        current,
    )
    if exchange.operation is None:
        return
    llm = exchange.llm
    usage = exchange.usage
    instruments.record_llm(
        (
            exchange.operation,
            exchange.config.provider_name,
            llm.model if llm is not None else None,
            response.model if response is not None else None,
            error_type,
        ),
        current,
        duration,
        ttft,
        usage.input_tokens,
        usage.output_tokens,
    )
