"""Extraction with and without the propagators' headers, through the one-pass shortcut."""

from __future__ import annotations

from typing import Any

from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import CarrierT, Getter, TextMapPropagator, default_getter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from aimiddleware.tracing import TracingOptions
from aimiddleware.tracing._config import Config
from aimiddleware.tracing._http import declared_fields

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
W3C = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


class PrefixedBaggage(TextMapPropagator):
    """Reads every ``ot-baggage-*`` header, which its ``fields`` cannot list (as OT's does)."""

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        context = context if context is not None else Context()
        for key in getter.keys(carrier):
            if key.startswith("ot-baggage-"):
                values = getter.get(carrier, key) or [""]
                context = baggage.set_baggage(key[11:], values[0], context=context)
        return context

    def inject(self, carrier: Any, context: Context | None = None, setter: Any = None) -> None:
        raise NotImplementedError

    @property
    def fields(self) -> set[str]:
        return {"ot-tracer-traceid"}


def _config(propagator: TextMapPropagator) -> Config:
    options = TracingOptions.of(propagator=propagator, body_limit=1024, content_limit=1024)
    return Config(options, version="test")


def test_only_w3c_propagators_declare_every_header_they_read() -> None:
    assert declared_fields(W3C) == frozenset({b"traceparent", b"tracestate", b"baggage"})
    assert declared_fields(TraceContextTextMapPropagator()) == frozenset(
        {b"traceparent", b"tracestate"}
    )
    assert declared_fields(PrefixedBaggage()) is None
    assert declared_fields(CompositePropagator([W3C, PrefixedBaggage()])) is None


def test_a_request_without_trace_headers_extracts_an_empty_context() -> None:
    context = _config(W3C).extract([(b"host", b"example"), (b"content-type", b"text/plain")])
    assert context == W3C.extract({})
    assert not trace.get_current_span(context).get_span_context().is_valid


def test_trace_headers_are_found_whatever_their_case() -> None:
    headers = [(b"host", b"example"), (b"TraceParent", TRACEPARENT), (b"baggage", b"k=v")]
    context = _config(W3C).extract(headers)
    span_context = trace.get_current_span(context).get_span_context()
    assert span_context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert baggage.get_baggage("k", context) == "v"


def test_a_propagator_that_reads_undeclared_headers_still_sees_them() -> None:
    context = _config(PrefixedBaggage()).extract([(b"ot-baggage-user", b"ada")])
    assert baggage.get_baggage("user", context) == "ada"
