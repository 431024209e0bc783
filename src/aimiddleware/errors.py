"""The one error shape: every error response of the library is written here.

An error is an :class:`ErrorInfo` (status, message, OpenAI ``type``, ``code``, ``param``);
:func:`render_error` writes it as the OpenAI envelope (``{"error": {...}}``) or as RFC 9457
problem details (``application/problem+json``), and :func:`send_error` sends it. Which of the two
a request gets is decided the same way everywhere:

1. the caller's choice when it passes ``format=`` (the idempotency draft's problems always are);
2. else the route's, when ``NormalizeMiddleware`` matched a route with ``format="problem"``
   (it records the choice in the scope for the middlewares inside it);
3. else problem details when ``Accept`` prefers ``application/problem+json``;
4. else the OpenAI envelope.

Your own handlers and middlewares use the same functions, so their errors look like the
library's:

>>> info = ErrorInfo(402, "Your budget is spent.", "insufficient_quota", code="budget_exceeded")
>>> info.envelope()
{'error': {'message': 'Your budget is spent.', 'type': 'insufficient_quota', 'param': None, \
'code': 'budget_exceeded'}}
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final, Literal

from ._asgi import get_header
from .context import ERROR_FORMAT_KEY, ERROR_KEY, Scope, Send, request_id, trace_id

__all__ = [
    "GENERIC_5XX",
    "PROBLEM_JSON",
    "STATUS_DEFAULTS",
    "ErrorFormat",
    "ErrorInfo",
    "chosen_format",
    "error_defaults",
    "reason",
    "render_error",
    "retry_headers",
    "send_error",
    "wants_problem",
]

ErrorFormat = Literal["openai", "problem"]

PROBLEM_JSON: Final = b"application/problem+json"
_JSON: Final = b"application/json"

# status -> (type, code); docs/normalize.md documents this table
STATUS_DEFAULTS: Final[dict[int, tuple[str, str | None]]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "insufficient_permissions"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    406: ("invalid_request_error", "not_acceptable"),
    408: ("invalid_request_error", "request_timeout"),
    409: ("invalid_request_error", "conflict"),
    410: ("invalid_request_error", "gone"),
    411: ("invalid_request_error", "length_required"),
    412: ("invalid_request_error", "precondition_failed"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    422: ("invalid_request_error", "invalid_value"),
    428: ("invalid_request_error", "precondition_required"),
    429: ("requests", "rate_limit_exceeded"),
    431: ("invalid_request_error", "request_header_fields_too_large"),
    500: ("server_error", "internal_error"),
    501: ("server_error", "not_implemented"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}

GENERIC_5XX: Final = "The server had an error while processing your request."


def reason(status: int) -> str:
    """The HTTP reason phrase of ``status`` (``"Error"`` for unknown codes)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_defaults(status: int) -> tuple[str, str | None]:
    """The OpenAI ``(type, code)`` a status means when nothing more specific is known."""
    found = STATUS_DEFAULTS.get(status)
    if found is not None:
        return found
    return ("server_error", None) if status >= 500 else ("invalid_request_error", None)


@dataclass(slots=True)
class ErrorInfo:
    """One error, before it is written as an OpenAI envelope or RFC 9457 problem.

    ``type`` and ``code`` default to what the status means (:data:`STATUS_DEFAULTS`).
    ``problem_type`` is the problem's type URI when it has its own (else the route's
    ``problem_type_base`` + code, or ``about:blank``), ``title`` its title when it is not the
    reason phrase; ``extra`` holds more members of the error object.

    ``retry_after`` (seconds) and ``should_retry`` are the retry signals :func:`send_error`
    writes as ``Retry-After``, ``retry-after-ms`` and ``x-should-retry`` (see
    :func:`retry_headers`): set them on every 429 and 503, ``should_retry=False`` where waiting
    cannot help.
    """

    status: int
    message: str
    type: str = ""
    param: str | None = None
    code: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    problem_type: str | None = None
    title: str | None = None
    retry_after: float | None = None
    should_retry: bool | None = None

    def __post_init__(self) -> None:
        if not self.type:
            kind, code = error_defaults(self.status)
            self.type = kind
            if self.code is None:
                self.code = code

    def envelope(self, trace_id: str | None = None) -> dict[str, Any]:
        """The OpenAI error envelope."""
        error: dict[str, Any] = {
            **self.extra,
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        if trace_id:
            error["trace_id"] = trace_id
        return {"error": error}

    def problem(
        self, type_base: str | None, request_id: str, trace_id: str | None = None
    ) -> dict[str, Any]:
        """RFC 9457 problem details, with the OpenAI fields as extension members."""
        slug = self.code or self.type
        # a problem keeps the type its author gave it
        kind = self.problem_type or (f"{type_base}{slug}" if type_base else "about:blank")
        problem: dict[str, Any] = {
            "type": kind,
            "title": self.title or reason(self.status),
            "status": self.status,
            "detail": self.message,
            "error_type": self.type,
            "code": self.code,
            "param": self.param,
            "request_id": request_id,
        }
        if trace_id:
            problem["trace_id"] = trace_id
        return problem


def retry_headers(
    retry_after: float | None, should_retry: bool | None = None
) -> list[tuple[bytes, bytes]]:
    """The retry signals of an answer, as the ``openai`` SDK (and every Stainless-generated
    SDK) reads them: ``retry-after-ms`` first, then ``Retry-After``, and ``x-should-retry``.

    ``Retry-After`` is whole seconds, rounded up: never earlier than ``retry-after-ms``, which
    says the wait to the millisecond (rounded up too), so both name the same moment.

    >>> retry_headers(1.25, True)
    [(b'retry-after', b'2'), (b'retry-after-ms', b'1250'), (b'x-should-retry', b'true')]
    >>> retry_headers(None, False)
    [(b'x-should-retry', b'false')]
    """
    out: list[tuple[bytes, bytes]] = []
    if retry_after is not None:
        # the float's noise (0.3 * 1000 = 300.00000000000006) must not add a millisecond
        ms = max(0, math.ceil(round(retry_after * 1000, 6)))
        out.append((b"retry-after", b"%d" % -(-ms // 1000)))
        out.append((b"retry-after-ms", b"%d" % ms))
    if should_retry is not None:
        out.append((b"x-should-retry", b"true" if should_retry else b"false"))
    return out


def _media_ranges(accept: bytes) -> dict[str, float]:
    ranges: dict[str, float] = {}
    for item in accept.decode("latin-1").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges[media.lower()] = max(q, ranges.get(media.lower(), 0.0))
    return ranges


def wants_problem(accept: bytes | None) -> bool:
    """Whether ``Accept`` prefers ``application/problem+json`` over ``application/json``.

    >>> wants_problem(b"application/problem+json")
    True
    >>> wants_problem(b"application/json, application/problem+json;q=0.5")
    False
    """
    if not accept or b"problem+json" not in accept:
        return False
    ranges = _media_ranges(accept)
    problem = ranges.get("application/problem+json", 0.0)
    return problem > 0 and problem >= ranges.get("application/json", 0.0)


def chosen_format(scope: Scope, format: ErrorFormat | None = None) -> ErrorFormat:
    """The format an error for this request is written in (see the module's docs)."""
    if format is not None:
        return format
    routed = scope.get(ERROR_FORMAT_KEY)
    if routed is not None and routed[0] == "problem":
        return "problem"
    return "problem" if wants_problem(get_header(scope.get("headers", ()), b"accept")) else "openai"


def render_error(
    scope: Scope,
    info: ErrorInfo,
    *,
    format: ErrorFormat | None = None,
    type_base: str | None = None,
) -> tuple[bytes, bytes]:
    """``(content_type, body)`` of ``info`` for this request.

    ``type_base`` prefixes a problem's type URI (``https://errors.example.com/`` +
    ``rate_limit_exceeded``); without it the route's (from ``NormalizeMiddleware``) is used.
    """
    if chosen_format(scope, format) == "problem":
        if type_base is None:
            routed = scope.get(ERROR_FORMAT_KEY)
            type_base = routed[1] if routed is not None else None
        payload = info.problem(type_base, request_id(scope), trace_id(scope))
        content_type = PROBLEM_JSON
    else:
        payload = info.envelope(trace_id(scope))
        content_type = _JSON
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return content_type, body


async def send_error(
    send: Send,
    scope: Scope,
    info: ErrorInfo,
    headers: Iterable[tuple[bytes, bytes]] | Mapping[bytes, bytes] = (),
    *,
    format: ErrorFormat | None = None,
    type_base: str | None = None,
    close: bool = False,
) -> None:
    """Send ``info`` as the whole response, with ``headers`` (``WWW-Authenticate``...), the
    retry signals ``info`` carries (:func:`retry_headers`), ``x-request-id`` and, when
    ``close``, ``Connection: close``.

    The error is recorded in the scope, so an outer ``NormalizeMiddleware`` keeps it as it is
    (it rebuilds every other 5xx from its status alone).
    """
    content_type, body = render_error(scope, info, format=format, type_base=type_base)
    extra = headers.items() if isinstance(headers, Mapping) else headers
    raw = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("ascii")),
        *extra,
        (b"x-request-id", request_id(scope).encode("ascii")),
    ]
    if info.retry_after is not None or info.should_retry is not None:
        raw += retry_headers(info.retry_after, info.should_retry)
    if close:
        raw.append((b"connection", b"close"))
    scope[ERROR_KEY] = info
    await send({"type": "http.response.start", "status": info.status, "headers": raw})
    if scope.get("method") == "HEAD":
        body = b""
    await send({"type": "http.response.body", "body": body, "more_body": False})
