"""The facts of one request, each under its scope key, and their accessors."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, Protocol

from ..principal import Principal
from ._llm import LLMRequest, LLMUsage

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
AnnotationValue = str | int | float | bool

#: ``scope["state"][PRINCIPAL_STATE_KEY]``: the ``Principal`` (also ``scope["auth"]``)
PRINCIPAL_STATE_KEY: Final = "principal"
#: the request id (str)
REQUEST_ID_KEY: Final = "aimiddleware.request_id"
#: the W3C trace id, 32 lower-case hex digits (str)
TRACE_ID_KEY: Final = "aimiddleware.trace_id"
#: the middlewares' decisions: ``{name: value}``
ANNOTATIONS_KEY: Final = "aimiddleware.attributes"
#: the request body as the client sent it (bytes), once a middleware has read it
BODY_KEY: Final = "aimiddleware.body"
#: the request body parsed as JSON, parsed at most once
JSON_KEY: Final = "aimiddleware.json"
#: the parsed OpenAI-compatible request (``LLMRequest``), parsed at most once
LLM_REQUEST_KEY: Final = "aimiddleware.llm_request"
#: the token usage the model stated (``LLMUsage``), once known
LLM_USAGE_KEY: Final = "aimiddleware.llm_usage"
#: the object that writes ``WWW-Authenticate`` challenges for this request's protected resource
CHALLENGER_KEY: Final = "aimiddleware.oauth.challenger"
#: the route template of a response given without running the app (an idempotent replay)
ROUTE_TEMPLATE_KEY: Final = "aimiddleware.route_template"

#: ``(format, problem_type_base)`` of the route ``NormalizeMiddleware`` matched, for every error
#: written inside it (see ``aimiddleware.errors``)
ERROR_FORMAT_KEY: Final = "aimiddleware.error_format"
#: the ``ErrorInfo`` of the error response the library sent for this request, if it sent one
ERROR_KEY: Final = "aimiddleware.error"

_MAX_REQUEST_ID: Final = 128
# 1 to 128 visible ASCII characters: a caller's id that logs and headers can carry as it is
_VISIBLE: Final = re.compile(rb"[\x21-\x7e]+")
#: a parsed value that is known not to exist (not JSON, not an LLM request)
ABSENT: Final = object()


# -- annotations ------------------------------------------------------------------------------


def annotate(scope: Scope, name: str, value: AnnotationValue) -> None:
    """Record a decision on the request, e.g.
    ``annotate(scope, "aimiddleware.idempotency.outcome", "replayed")``.

    The library's names live under ``aimiddleware.<middleware>.``; use a prefix of your own for
    yours. The tracing middleware copies them onto the request's span and the access log, so
    values must never contain secrets.
    """
    attributes = scope.get(ANNOTATIONS_KEY)
    if attributes is None:
        attributes = scope[ANNOTATIONS_KEY] = {}
    attributes[name] = value


def get_annotations(scope: Scope) -> dict[str, AnnotationValue]:
    """The decisions recorded with :func:`annotate` so far (created empty if none).

    An outer middleware calls this before calling the app, so that it holds the same dict the
    inner middlewares write into.
    """
    attributes = scope.get(ANNOTATIONS_KEY)
    if attributes is None:
        attributes = scope[ANNOTATIONS_KEY] = {}
    return attributes


# -- the route ------------------------------------------------------------------------------


def route_path(scope: Scope) -> str:
    """The path a router matches: ``scope["path"]`` without the ``root_path`` prefix.

    Under ``Mount("/api", app)`` (or ``uvicorn --root-path /api``) the app sees
    ``path="/api/v1/models"`` and ``root_path="/api"``; its routes, and every path rule of this
    library, match ``/v1/models``. The same rule as Starlette's router (``get_route_path``): the
    prefix is removed only at a segment boundary, and a path that does not carry it is the route
    path as it is.

    >>> route_path({"path": "/api/v1/models", "root_path": "/api"})
    '/v1/models'
    >>> route_path({"path": "/apiv1", "root_path": "/api"})
    '/apiv1'
    """
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if len(path) == len(root):
        return ""
    if path[len(root)] == "/":
        return path[len(root) :]
    return path


# -- ids --------------------------------------------------------------------------------------


def request_id(scope: Scope) -> str:
    """The request id: the caller's ``x-request-id`` when it is sane (1-128 visible ASCII
    characters), else a new random one. Computed once per request and shared by every middleware
    (error bodies, logs, spans).
    """
    cached = scope.get(REQUEST_ID_KEY)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    value = None
    for name, raw in scope.get("headers", ()):
        if name == b"x-request-id":
            if raw and len(raw) <= _MAX_REQUEST_ID and _VISIBLE.fullmatch(raw) is not None:
                value = raw.decode("ascii")
            break
    if value is None:
        try:
            value = _FRESH_IDS.pop()
        except IndexError:
            value = _draw_ids()
    scope[REQUEST_ID_KEY] = value
    return value


# New ids: ``req_`` and 128 random bits as 32 hex digits, like ``uuid4().hex``. The bits come
# from ``os.urandom`` in batches: the system call, not the bytes, is what costs (most requests
# need a new id). ``list.pop`` is atomic, so two threads never take the same id.
_FRESH_IDS: list[str] = []


def _draw_ids() -> str:
    # 64 ids at once, split and prefixed without a Python loop
    drawn = "req_" + os.urandom(16 * 64).hex(" ", 16).replace(" ", " req_")
    _FRESH_IDS.extend(drawn.split(" "))
    return _FRESH_IDS.pop()


# a forked worker must not hand out the ids its parent drew
os.register_at_fork(after_in_child=_FRESH_IDS.clear)


def trace_id(scope: Scope) -> str | None:
    """The W3C trace id (32 hex digits) of the request's span, when tracing is on."""
    return scope.get(TRACE_ID_KEY)


def set_trace_id(scope: Scope, value: str) -> None:
    """Record the request's trace id (``TracingMiddleware`` does; so may your own tracing)."""
    scope[TRACE_ID_KEY] = value


# -- the caller -------------------------------------------------------------------------------


def set_principal(scope: Scope, principal: Principal) -> None:
    """Attach ``principal`` to the request: ``scope["state"]["principal"]`` and ``scope["auth"]``.

    ``request.state.principal`` then works in Starlette and FastAPI handlers.
    """
    state = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    state[PRINCIPAL_STATE_KEY] = principal
    scope["auth"] = principal


def get_principal(scope: Scope) -> Principal | None:
    """The principal an auth middleware attached to this request, or ``None``."""
    state = scope.get("state")
    if state:
        principal = state.get(PRINCIPAL_STATE_KEY)
        if isinstance(principal, Principal):
            return principal
    return None


# -- the LLM exchange ----------------------------------------------------------------------------


def get_llm_request(scope: Scope) -> LLMRequest | None:
    """The OpenAI-compatible request a middleware parsed for this request, if any was parsed and
    it is one. Read-only: it is shared."""
    value = scope.get(LLM_REQUEST_KEY)
    return value if isinstance(value, LLMRequest) else None


def set_llm_usage(scope: Scope, usage: LLMUsage) -> None:
    """Hand the usage a middleware settled to the others of the stack.

    The rate limiter does, once the response's usage is known: it may have asked for the usage
    chunk of a stream itself and removed it before the stream travels outwards, so a middleware
    outside it (tracing) would otherwise never see the usage. Only usage the model stated is
    handed over, never an estimate.
    """
    scope[LLM_USAGE_KEY] = usage


def get_llm_usage(scope: Scope) -> LLMUsage | None:
    """The usage :func:`set_llm_usage` handed over for this request, if any."""
    usage = scope.get(LLM_USAGE_KEY)
    return usage if isinstance(usage, LLMUsage) else None


# -- OAuth challenges -------------------------------------------------------------------------


class Challenger(Protocol):
    """Writes the ``WWW-Authenticate`` challenge of a refusal (see ``aimiddleware.oauth``)."""

    def headers(self, error: Any) -> list[tuple[bytes, bytes]]: ...


def set_challenger(scope: Scope, challenger: Challenger) -> None:
    """Record who challenges for this request's protected resource (``OAuthMiddleware`` does)."""
    scope[CHALLENGER_KEY] = challenger


def get_challenger(scope: Scope) -> Challenger | None:
    """The challenger of the ``OAuthMiddleware`` that saw this request, if any: inner code that
    refuses a token (a handler's scope check, the MCP middleware) challenges the same way."""
    return scope.get(CHALLENGER_KEY)


# -- replays ----------------------------------------------------------------------------------


def set_route_template_override(scope: Scope, template: str) -> None:
    """Name the route a response given on the app's behalf belongs to (an idempotent replay):
    the router never ran, so ``scope["route"]`` is not there."""
    scope[ROUTE_TEMPLATE_KEY] = template


def get_route_template_override(scope: Scope) -> str | None:
    """The template :func:`set_route_template_override` recorded, if any."""
    value = scope.get(ROUTE_TEMPLATE_KEY)
    return value if isinstance(value, str) else None


# -- errors -----------------------------------------------------------------------------------


def set_error_format(scope: Scope, format: str, type_base: str | None = None) -> None:
    """Choose how errors written for this request look: ``"openai"`` or ``"problem"`` (with the
    problem type URIs under ``type_base``). ``NormalizeMiddleware`` does, per route."""
    scope[ERROR_FORMAT_KEY] = (format, type_base)


def get_error(scope: Scope) -> Any:
    """The ``aimiddleware.errors.ErrorInfo`` of the error the library sent, if it sent one."""
    return scope.get(ERROR_KEY)
