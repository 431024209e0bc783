"""OAuth refusals: scope tokens, the refusal itself and its ``WWW-Authenticate`` challenges.

Shared by ``OAuthMiddleware`` (and its FastAPI dependency) and ``MCPScopeMiddleware``, so that
a refusal for a missing scope challenges the same way wherever it is decided: RFC 6750
``Bearer`` challenges, RFC 9449 ``DPoP`` challenges and RFC 9728's ``resource_metadata``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from .errors import ErrorInfo, retry_headers
from .exceptions import ConfigurationError

__all__ = ["AuthError", "Challenger", "check_scope_token", "insufficient_scope", "scope_tokens"]

# RFC 6750 section 3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), no '"' and no '\'
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# the error_description charset (RFC 6750 section 3): printable ASCII without '"' and '\'
_DESCRIPTION_UNSAFE: Final = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_DPOP_ERRORS: Final = ("invalid_dpop_proof", "use_dpop_nonce")


def check_scope_token(scope: object) -> bool:
    """Whether ``scope`` is a valid RFC 6749 scope token (so it can be quoted in a challenge)."""
    return isinstance(scope, str) and bool(_SCOPE_TOKEN.fullmatch(scope))


def scope_tokens(what: str, scopes: Iterable[str] | str, *, split: bool = True) -> tuple[str, ...]:
    """``scopes`` as distinct RFC 6749 scope tokens in order, else :class:`ConfigurationError`
    naming ``what``.

    With ``split`` (OAuth's options) one string or each item may hold several space-separated
    scopes, as a ``scope`` claim does; without it the value must be a list of single tokens.

    >>> scope_tokens("default_scopes", "chat models:read chat")
    ('chat', 'models:read')
    """
    if isinstance(scopes, str):
        if not split:
            raise ConfigurationError(f"{what}: give a list of scopes, not one string ({scopes!r})")
        scopes = (scopes,)
    items = list(scopes)
    if split:
        items = [s for part in items for s in (part.split() if isinstance(part, str) else [part])]
    out = tuple(dict.fromkeys(items))
    for scope in out:
        if not check_scope_token(scope):
            raise ConfigurationError(f"{what}: {scope!r} is not an RFC 6749 scope token")
    return out


class AuthError(Exception):
    """One refusal: what the client is told, in the body and in the challenge.

    ``error`` is the OAuth error code (``invalid_request``, ``invalid_token``,
    ``insufficient_scope``, ``invalid_dpop_proof``, ``use_dpop_nonce``) or ``None`` when the
    request simply carried no credentials (RFC 6750 section 3.1: no error code then).
    """

    def __init__(
        self,
        status: int,
        error: str | None,
        description: str,
        *,
        scopes: Iterable[str] = (),
        scheme: str = "Bearer",
        dpop_nonce: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.scopes = tuple(scopes)
        self.scheme = scheme
        self.dpop_nonce = dpop_nonce
        self.retry_after = retry_after

    def info(self) -> ErrorInfo:
        """The error as the renderer writes it (see docs/oauth.md for every shape)."""
        if self.status == 400:
            kind, code = "invalid_request_error", "invalid_request"
        elif self.status == 401:
            kind = "invalid_request_error"
            code = self.error if self.error in _DPOP_ERRORS and self.error else "invalid_api_key"
        elif self.status == 403:
            kind, code = "permission_error", "insufficient_scope"
        else:
            kind, code = "server_error", "auth_unavailable"
        return ErrorInfo(self.status, self.description, kind, code=code)


def _quote(value: str) -> str:
    return '"' + _DESCRIPTION_UNSAFE.sub("?", value) + '"'


class Challenger:
    """Builds the ``WWW-Authenticate`` values of one configuration.

    ``resource_metadata`` is the RFC 9728 metadata URL (MCP clients start discovery from it);
    ``dpop_algs`` is set when DPoP is accepted, which adds a ``DPoP`` challenge next to the
    ``Bearer`` one (RFC 9449 section 7.1).
    """

    __slots__ = ("dpop_algs", "dpop_required", "realm", "resource_metadata")

    def __init__(
        self,
        *,
        resource_metadata: str | None,
        realm: str | None = None,
        dpop_algs: tuple[str, ...] = (),
        dpop_required: bool = False,
    ) -> None:
        self.resource_metadata = resource_metadata
        self.realm = realm
        self.dpop_algs = dpop_algs
        self.dpop_required = dpop_required

    def _params(self, error: AuthError, scheme: str) -> list[str]:
        params: list[str] = []
        if self.realm is not None:
            params.append(f"realm={_quote(self.realm)}")
        if error.error is not None and error.scheme == scheme:
            params.append(f"error={_quote(error.error)}")
            params.append(f"error_description={_quote(error.description)}")
        if error.scopes and error.error in (None, "insufficient_scope", "invalid_token"):
            params.append(f"scope={_quote(' '.join(error.scopes))}")
        if self.resource_metadata is not None:
            params.append(f"resource_metadata={_quote(self.resource_metadata)}")
        if scheme == "DPoP":
            params.append(f"algs={_quote(' '.join(self.dpop_algs))}")
        return params

    def challenges(self, error: AuthError) -> list[bytes]:
        """The ``WWW-Authenticate`` values of a refusal, one per scheme."""
        schemes = ["DPoP"] if self.dpop_required else ["Bearer"]
        if self.dpop_algs and not self.dpop_required:
            schemes.append("DPoP")
        if error.scheme == "DPoP" and "DPoP" not in schemes:
            schemes.append("DPoP")
        out = []
        for scheme in schemes:
            params = self._params(error, scheme)
            out.append((scheme + (" " + ", ".join(params) if params else "")).encode("latin-1"))
        return out

    def headers(self, error: AuthError) -> list[tuple[bytes, bytes]]:
        """The response headers of a refusal: challenges, ``DPoP-Nonce``, ``Retry-After``."""
        out: list[tuple[bytes, bytes]] = []
        if error.status in (400, 401, 403):
            out += [(b"www-authenticate", value) for value in self.challenges(error)]
        if error.dpop_nonce is not None:
            out.append((b"dpop-nonce", error.dpop_nonce.encode("ascii")))
        if error.retry_after is not None:  # a backend is down: a 503 is worth retrying
            out += retry_headers(error.retry_after, True if error.status == 503 else None)
        out.append((b"cache-control", b"no-store"))
        return out


_CREDENTIAL_NAMES: Final = {
    "api_key": "API key",
    "jwt": "access token",
    "introspection": "access token",
}


def insufficient_scope(
    credential: str, granted: frozenset[str], required: Iterable[str]
) -> AuthError:
    """The 403 for a caller whose credential lacks some of ``required``: the message names the
    credential's kind and the scopes it lacks, which the challenge carries as well.
    """
    required = tuple(required)
    missing = [scope for scope in required if scope not in granted]
    kind = _CREDENTIAL_NAMES.get(credential, "caller")
    noun = "scope" if len(missing) == 1 else "scopes"
    message = f"the {kind} lacks the required {noun}: {' '.join(missing)}"
    return AuthError(403, "insufficient_scope", message, scopes=required)
