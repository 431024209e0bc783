"""The app's error answers, written by the library's one renderer (``aimiddleware.errors``).

Every error is an :class:`~aimiddleware.errors.ErrorInfo` sent as the OpenAI envelope (an
``error`` object with ``message``, ``type``, ``param`` and ``code``). The
``NormalizeMiddleware`` around the app reads that envelope and answers in the format the client
and the route ask for (problem details included); a 5xx keeps only its status and headers there.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aimiddleware.errors import ErrorInfo, render_error, retry_headers

from .engine import QueueFull


class APIError(Exception):
    """An error answered in the OpenAI envelope with the status OpenAI uses."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.info = ErrorInfo(status, message, type, param=param, code=code)
        self.info.retry_after, self.info.should_retry = retry_after, should_retry
        self.headers = headers or {}


def retry_signals(seconds: float, should_retry: bool = True) -> dict[str, str]:
    """``Retry-After``, ``retry-after-ms`` and ``x-should-retry`` (docs/ratelimit.md), for the
    answers that are not errors of the renderer (``/health``)."""
    return {k.decode(): v.decode() for k, v in retry_headers(seconds, should_retry)}


def error_response(
    request: Request, info: ErrorInfo, headers: Mapping[str, str] | None = None
) -> Response:
    """``info`` as the whole response, in the OpenAI envelope (the stack around the app
    rewrites it when the client asked for problem details).

    Unlike ``send_error``, this records nothing in the scope: the app's errors are an app's to
    the middlewares around it, so a 5xx of the app keeps only its status and headers.
    """
    content_type, body = render_error(request.scope, info, format="openai")
    if info.retry_after is not None or info.should_retry is not None:
        signals = retry_headers(info.retry_after, info.should_retry)
        headers = {**{k.decode(): v.decode() for k, v in signals}, **(headers or {})}
    return Response(
        body, status_code=info.status, headers=headers, media_type=content_type.decode()
    )


def model_loading() -> APIError:
    return APIError(
        503,
        "the model is still loading",
        type="server_error",
        code="model_loading",
        retry_after=1,
        should_retry=True,
    )


def overloaded(exc: QueueFull) -> APIError:
    return APIError(
        503,
        f"The server is overloaded ({exc}); retry shortly.",
        type="server_error",
        code="server_overloaded",
        retry_after=1,
        should_retry=True,
    )


def generation_timeout() -> APIError:
    return APIError(
        504,
        "The generation did not finish within the server's deadline.",
        type="server_error",
        code="generation_timeout",
    )


def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return error_response(request, exc.info, exc.headers)


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    message = first.get("msg", "invalid request")
    if param:
        message = f"{param}: {message}"
    if first.get("type") == "json_invalid":
        message, param = "the request body is not valid JSON", None
    return error_response(request, ErrorInfo(400, message, "invalid_request_error", param))


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
        code: str | None = "unknown_url"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
        code = "method_not_allowed"
    else:
        message, code = str(exc.detail), None
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    info = ErrorInfo(exc.status_code, message, kind, code=code)
    return error_response(request, info, exc.headers)


def _unencodable_text(request: Request, _: Exception) -> Response:
    # JSON may escape an unpaired surrogate (\ud800): Python parses it into a str that has no
    # UTF-8 form, and the tokenizer's encode fails on it. That is the caller's text, not a fault.
    message = "The request contains text that is not valid Unicode (an unpaired surrogate)."
    return error_response(request, ErrorInfo(400, message, "invalid_request_error"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(UnicodeEncodeError, _unencodable_text)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
