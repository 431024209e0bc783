"""Per-endpoint scopes for FastAPI / Starlette handlers, on top of the middleware's principal."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .._challenges import AuthError, Challenger, insufficient_scope, scope_tokens
from ..context import Challenger as ScopeChallenger
from ..context import get_annotations, get_challenger, get_principal
from ..errors import ErrorInfo, render_error
from ..principal import Principal

__all__ = ["OAuthHTTPException", "RequireScopes", "oauth_exception_handler", "requires_scopes"]

_FALLBACK = Challenger(resource_metadata=None)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _challenger(scope: Any) -> ScopeChallenger:
    return get_challenger(scope) or _FALLBACK


def _response(scope: Any, info: ErrorInfo, headers: Mapping[str, str] | None) -> Response:
    content_type, body = render_error(scope, info)
    return Response(body, info.status, headers, media_type=content_type.decode("latin-1"))


def _header_dict(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    # a mapping holds one value per name: several challenges (Bearer and DPoP) are joined
    # with commas, which RFC 9110 section 11.6.1 allows in one WWW-Authenticate field
    out: dict[str, str] = {}
    for key, value in raw:
        name, text = key.decode("latin-1"), value.decode("latin-1")
        out[name] = f"{out[name]}, {text}" if name in out else text
    return out


class OAuthHTTPException(HTTPException):
    """A 401/403 refusal raised by :class:`RequireScopes`, carrying its challenge headers.

    FastAPI's default handler renders it as ``{"detail": message}`` with the right status and
    ``WWW-Authenticate``; register :func:`oauth_exception_handler` (or put the normalisation
    middleware in front) for the library's error shape.
    """

    def __init__(self, error: AuthError, challenger: ScopeChallenger) -> None:
        headers = _header_dict(challenger.headers(error))
        super().__init__(error.status, error.description, headers)
        self.info = error.info()
        self.payload = self.info.envelope()


async def oauth_exception_handler(request: Request, exc: Exception) -> Response:
    """Render :class:`OAuthHTTPException` as every error of the library is rendered (the
    OpenAI envelope, or RFC 9457 problem details where the route or ``Accept`` asks for them).

    >>> from fastapi import FastAPI
    >>> app = FastAPI(exception_handlers={OAuthHTTPException: oauth_exception_handler})
    """
    if not isinstance(exc, OAuthHTTPException):  # pragma: no cover (registered for it only)
        raise exc
    return _response(request.scope, exc.info, exc.headers)


def _check(scope: Any, required: tuple[str, ...]) -> tuple[Principal | None, AuthError | None]:
    principal = get_principal(scope)
    if principal is None:
        return None, AuthError(401, None, "authentication required", scopes=required)
    if not principal.has_scopes(required):
        error = insufficient_scope(principal.credential, principal.scopes, required)
        # RFC 9449 section 7.1: a request made with a DPoP proof is answered in that scheme
        if get_annotations(scope).get("aimiddleware.auth.dpop"):
            error.scheme = "DPoP"
        return None, error
    return principal, None


class RequireScopes:
    """A FastAPI dependency: the caller's principal, refused unless it holds every scope.

    >>> from typing import Annotated
    >>> from fastapi import Depends, FastAPI
    >>> app = FastAPI()
    >>> @app.post("/v1/embeddings")
    ... async def embeddings(
    ...     principal: Annotated[Principal, Depends(RequireScopes("embeddings"))],
    ... ) -> dict[str, str]:
    ...     return {"id": principal.id}
    """

    def __init__(self, *scopes: str) -> None:
        self.scopes = scope_tokens("RequireScopes", scopes)

    def __repr__(self) -> str:
        return f"RequireScopes{self.scopes!r}"

    async def __call__(self, request: Request) -> Principal:
        principal, error = _check(request.scope, self.scopes)
        if error is not None:
            raise OAuthHTTPException(error, _challenger(request.scope))
        assert principal is not None
        return principal


def requires_scopes(*scopes: str) -> Callable[[F], F]:
    """Decorate an endpoint that takes a ``Request``: refused unless every scope is held.

    The refusal is the middleware's own response (error body and challenge), no handler needed.

    >>> from starlette.responses import JSONResponse
    >>> @requires_scopes("models:read")
    ... async def list_models(request: Request) -> Response:
    ...     return JSONResponse({"object": "list", "data": []})
    """
    required = scope_tokens("requires_scopes", scopes)

    def decorate(endpoint: F) -> F:
        signature = inspect.signature(endpoint)
        names = [
            name
            for name, p in signature.parameters.items()
            if p.annotation in (Request, "Request") or name == "request"
        ]
        if not names:
            raise TypeError(f"{endpoint.__qualname__} must take a `request: Request` parameter")
        position = list(signature.parameters).index(names[0])

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            request: Request = kwargs[names[0]] if names[0] in kwargs else args[position]
            _, error = _check(request.scope, required)
            if error is not None:
                headers = _header_dict(_challenger(request.scope).headers(error))
                return _response(request.scope, error.info(), headers)
            return await endpoint(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
