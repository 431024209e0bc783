"""What an error response says, read from whatever body the app or a middleware produced.

The status decides the default ``type`` and ``code``; the body, when it is one of the shapes
met in practice (the OpenAI envelope, FastAPI's ``{"detail": ...}``, RFC 9457 problem details,
plain text), supplies the message and may override both. A 5xx says nothing but its status: a
generic message, whatever its body held.
"""

from __future__ import annotations

import json
from typing import Any, Final

from starlette.exceptions import HTTPException

from .._asgi import RawHeaders, get_header, media_type
from .._openai import llm_operation
from ..context import Message, Scope, annotate, request_id
from ..errors import GENERIC_5XX, STATUS_DEFAULTS, ErrorInfo, chosen_format, reason
from ..errors import error_defaults as defaults

__all__ = [
    "GENERIC_5XX",
    "STATUS_DEFAULTS",
    "ErrorInfo",
    "describe",
    "error_headers",
    "exception_error",
    "held_error",
    "in_chosen_shape",
    "is_json_rpc",
    "read_error",
    "reason",
    "where",
]

_MAX_MESSAGE: Final = 2000
_REPLACED: Final = frozenset(
    {b"content-type", b"content-length", b"content-encoding", b"transfer-encoding"}
)
_CONTENT_TYPES: Final = {"openai": "application/json", "problem": "application/problem+json"}


def error_headers(scope: Scope, headers: RawHeaders, content_type: bytes, length: int) -> list[Any]:
    """The headers of an error written in place of a response: the response's own, but those of
    its body, and ``x-request-id``."""
    out: list[Any] = [h for h in headers if h[0].lower() not in _REPLACED]
    if get_header(out, b"x-request-id") is None:
        out.append((b"x-request-id", request_id(scope).encode("ascii")))
    out.append((b"content-type", content_type))
    out.append((b"content-length", str(length).encode("ascii")))
    return out


def where(scope: Scope) -> tuple[str, str, str]:
    """Method, path and request id, as the log lines name a request."""
    return scope.get("method", ""), scope.get("path", ""), request_id(scope)


def in_chosen_shape(scope: Scope, content_type: bytes) -> bool:
    """Whether an error body of ``content_type`` is in the shape this request's errors take."""
    return media_type(content_type) == _CONTENT_TYPES[chosen_format(scope)]


def is_json_rpc(payload: Any) -> bool:
    """A JSON-RPC 2.0 message or batch (an MCP endpoint's body): never rewritten."""
    if isinstance(payload, list):
        return bool(payload) and all(is_json_rpc(item) for item in payload)
    return isinstance(payload, dict) and payload.get("jsonrpc") == "2.0"


def describe(scope: Scope, info: ErrorInfo) -> ErrorInfo:
    """Name the request in a generic 5xx message, and record the error on the request."""
    if info.status >= 500 and info.message == GENERIC_5XX:
        info.message = f"{GENERIC_5XX} Request id: {request_id(scope)}."
    annotate(scope, "aimiddleware.normalize.error_type", info.type)
    if info.code:
        annotate(scope, "aimiddleware.normalize.error_code", info.code)
    return info


def held_error(start: Message, body: bytes | None, path: str) -> ErrorInfo | None:
    """The error a held 4xx response (its ``http.response.start`` and body) means, or ``None``
    for a JSON-RPC body (an MCP endpoint's), which is never rewritten.
    """
    headers = start.get("headers", [])
    encoding = get_header(headers, b"content-encoding")
    if encoding is not None and encoding.strip().lower() != b"identity":
        body = None  # compressed by something inside: the status speaks alone
    content_type = media_type(get_header(headers, b"content-type"))
    if body and content_type.endswith("json"):
        try:
            if is_json_rpc(json.loads(body)):
                return None
        except (ValueError, UnicodeDecodeError, RecursionError):
            pass
    status = int(start.get("status", 500))
    return read_error(status, body, content_type, path=path, response_headers=headers)


def exception_error(exc: Exception) -> tuple[ErrorInfo, list[tuple[bytes, bytes]]]:
    """The error and headers an unhandled exception is answered with: an ``HTTPException``'s
    status, detail and headers; for any 5xx, nothing but the status (never exception text).
    """
    status, message, headers = 500, None, []
    if isinstance(exc, HTTPException):
        status, message = exc.status_code, exc.detail
        headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in (exc.headers or {}).items()
        ]
    if status >= 500:
        message = None
    return ErrorInfo(status, message or GENERIC_5XX), headers


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _field_path(loc: Any) -> str | None:
    if not isinstance(loc, list | tuple):
        return None
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str):
            out += f".{part}" if out else part
    return out or None


def _validation(detail: list[Any]) -> tuple[str, str | None, str]:
    """Message, param and code of FastAPI/pydantic validation errors (the first one named)."""
    first = next((d for d in detail if isinstance(d, dict)), None)
    if first is None:
        return "The request is invalid.", None, "invalid_value"
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        # the location of an unparseable body is a character offset, not a field
        return _unparseable(first), None, "invalid_json"
    param = _field_path(first.get("loc"))
    msg = str(first.get("msg", "is invalid"))
    name = f"'{param}'" if param else "the request body"
    if kind == "missing":
        code, message = "missing_required_parameter", f"Missing required parameter: {name}."
    elif kind == "extra_forbidden":
        code, message = "unknown_parameter", f"Unrecognized request argument supplied: {name}."
    elif kind.endswith(("_type", "_parsing")):
        code, message = "invalid_type", f"Invalid type for {name}: {msg}."
    else:
        code, message = "invalid_value", f"Invalid value for {name}: {msg}."
    more = len(detail) - 1
    if more > 0:
        message += f" ({more} more error{'s' if more > 1 else ''})"
    return message, param, code


def _unparseable(error: dict[str, Any]) -> str:
    ctx = error.get("ctx")
    reason = ctx.get("error") if isinstance(ctx, dict) else None
    message = f"Could not parse the JSON body: {reason or error.get('msg', 'invalid JSON')}"
    loc = error.get("loc")
    offset = loc[-1] if isinstance(loc, list | tuple) and loc else None
    if isinstance(offset, int):
        message += f" (at character {offset})"
    return message + "."


def _is_zero(value: bytes | None) -> bool:
    try:
        return value is not None and float(value) <= 0
    except ValueError:
        return False


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def read_error(
    status: int,
    body: bytes | None,
    content_type: str,
    *,
    path: str,
    response_headers: RawHeaders,
) -> ErrorInfo:
    """The error a response means. ``body`` is ``None`` when it could not be read (too large,
    content-encoded); the status then speaks alone.
    """
    kind, code = defaults(status)
    if status >= 500:
        # never exception text, an upstream's answer or a framework's default page
        return ErrorInfo(status, GENERIC_5XX, kind, code=code)
    param: str | None = None
    message: str | None = None
    problem_type: str | None = None
    extra: dict[str, Any] = {}
    payload: Any = None
    if body and (content_type.endswith("json") or content_type.endswith("+json")):
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        detail = payload.get("detail")
        if isinstance(error, dict):
            message = _str_or_none(error.get("message"))
            kind = _str_or_none(error.get("type")) or kind
            code = _str_or_none(error.get("code")) if error.get("code") is not None else code
            param = _str_or_none(error.get("param"))
            extra = {
                k: v
                for k, v in error.items()
                if k not in ("message", "type", "code", "param", "trace_id")
            }
        elif isinstance(error, str):
            message = error
        elif status == 422 and isinstance(detail, list):
            message, param, code = _validation(detail)
        elif isinstance(detail, str):  # FastAPI HTTPException, or RFC 9457
            message = detail
            problem_type = _problem_type(payload)
            if problem_type is not None:
                slug = _slug(problem_type)
                code = slug or code
        elif isinstance(payload.get("message"), str):
            message = payload["message"]
        elif isinstance(payload.get("title"), str):
            message = payload["title"]
        elif detail is not None:
            message = json.dumps(detail, ensure_ascii=False)
    elif body and content_type.startswith("text/"):
        message = body.decode("utf-8", "replace")
    if status == 404 and code == "not_found" and llm_operation(path) is not None:
        # the OpenAI-compatible route exists (or it would not end with an operation): an unknown
        # model is what a 404 means there
        code, param = "model_not_found", param or "model"
    if status == 429 and kind == "requests":
        tokens = get_header(response_headers, b"x-ratelimit-remaining-tokens")
        requests = get_header(response_headers, b"x-ratelimit-remaining-requests")
        if _is_zero(tokens) and not _is_zero(requests):
            kind = "tokens"
    if not message or not message.strip():
        message = reason(status)
    return ErrorInfo(status, _clip(message), kind, param, code, extra, problem_type)


def _problem_type(payload: dict[str, Any]) -> str | None:
    """The ``type`` URI of an RFC 9457 problem (``None`` for ``about:blank`` or none)."""
    kind = payload.get("type")
    if isinstance(kind, str) and kind and kind != "about:blank" and "title" in payload:
        return kind
    return None


def _slug(uri: str) -> str | None:
    """The last name in a problem type URI: its fragment, else its last path segment.

    >>> _slug("https://example.org/problems#idempotency-key-reused")
    'idempotency-key-reused'
    """
    tail = uri.rsplit("#", 1)[1] if "#" in uri else uri.rstrip("/").rsplit("/", 1)[-1]
    return tail or None
