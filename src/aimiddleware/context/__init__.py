"""The request context: what the middlewares of one stack share about a request, and how to read it.

Middlewares share per-request facts through keys in the ASGI scope, never through ``self``: the
outermost one that needs a fact creates it, inner ones read or add to it. Scopes are passed down
by reference (or shallow-copied), so a value created outside is seen inside. This module is the
whole contract: every key the library writes is named here, with the accessor to use. Your own
middlewares and handlers read the same facts through these accessors.

The facts, their accessors, and who writes them:

- principal: :func:`get_principal` (written by ``OAuthMiddleware``, or your own auth)
- route path (the path without ``root_path``, which every path rule matches):
  :func:`route_path`
- request id: :func:`request_id` (written by the first middleware that needs it)
- trace id: :func:`trace_id` (written by ``TracingMiddleware``)
- annotations: :func:`annotate` (every middleware records its decisions)
- parsed LLM request: :func:`get_llm_request` (parsed once, by rate limits or tracing)
- LLM usage: :func:`get_llm_usage` (written by ``RateLimitMiddleware``)
- OAuth challenger: :func:`get_challenger` (written by ``OAuthMiddleware``)
- error format of route: :func:`set_error_format` (written by ``NormalizeMiddleware``)
- error sent: :func:`get_error` (written by ``aimiddleware.errors.send_error``)
- route template of a replay: :func:`get_route_template_override` (written by
  ``IdempotencyMiddleware``)
- request body (bytes): :func:`read_body` (written by the first middleware that reads it)
- request body (JSON): :func:`json_body` (parsed once, on first use)
- work that goes on after the client left: :func:`get_continuation` (written by
  ``IdempotencyMiddleware``, read by ``TracingMiddleware``)

>>> scope = {"type": "http", "headers": [(b"x-request-id", b"req-42")]}
>>> request_id(scope)
'req-42'
>>> annotate(scope, "myapp.cache", "hit")
>>> get_annotations(scope)
{'myapp.cache': 'hit'}
"""

from __future__ import annotations

from ._body import (
    ClientDisconnected,
    RequestBodyTooLarge,
    json_body,
    read_body,
    replace_body,
    replay_receive,
)
from ._continuation import CONTINUATION_KEY, Continuation, continue_work, get_continuation
from ._facts import (
    ANNOTATIONS_KEY,
    BODY_KEY,
    CHALLENGER_KEY,
    ERROR_FORMAT_KEY,
    ERROR_KEY,
    JSON_KEY,
    LLM_REQUEST_KEY,
    LLM_USAGE_KEY,
    PRINCIPAL_STATE_KEY,
    REQUEST_ID_KEY,
    ROUTE_TEMPLATE_KEY,
    TRACE_ID_KEY,
    AnnotationValue,
    ASGIApp,
    Challenger,
    Message,
    Receive,
    Scope,
    Send,
    annotate,
    get_annotations,
    get_challenger,
    get_error,
    get_llm_request,
    get_llm_usage,
    get_principal,
    get_route_template_override,
    request_id,
    route_path,
    set_challenger,
    set_error_format,
    set_llm_usage,
    set_principal,
    set_route_template_override,
    set_trace_id,
    trace_id,
)
from ._llm import LLMRequest, LLMUsage

__all__ = [
    "ANNOTATIONS_KEY",
    "BODY_KEY",
    "CHALLENGER_KEY",
    "CONTINUATION_KEY",
    "ERROR_FORMAT_KEY",
    "ERROR_KEY",
    "JSON_KEY",
    "LLM_REQUEST_KEY",
    "LLM_USAGE_KEY",
    "PRINCIPAL_STATE_KEY",
    "REQUEST_ID_KEY",
    "ROUTE_TEMPLATE_KEY",
    "TRACE_ID_KEY",
    "ASGIApp",
    "AnnotationValue",
    "Challenger",
    "ClientDisconnected",
    "Continuation",
    "LLMRequest",
    "LLMUsage",
    "Message",
    "Receive",
    "RequestBodyTooLarge",
    "Scope",
    "Send",
    "annotate",
    "continue_work",
    "get_annotations",
    "get_challenger",
    "get_continuation",
    "get_error",
    "get_llm_request",
    "get_llm_usage",
    "get_principal",
    "get_route_template_override",
    "json_body",
    "read_body",
    "replace_body",
    "replay_receive",
    "request_id",
    "route_path",
    "set_challenger",
    "set_error_format",
    "set_llm_usage",
    "set_principal",
    "set_route_template_override",
    "set_trace_id",
    "trace_id",
]
