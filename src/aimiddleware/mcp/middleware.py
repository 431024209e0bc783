"""MCPScopeMiddleware: OAuth scopes per MCP endpoint, per tool and per JSON-RPC method."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from .._asgi import (
    ASGIApp,
    ClientDisconnected,
    Receive,
    RequestBodyTooLarge,
    Scope,
    Send,
    annotate,
    json_body,
    read_body,
)
from ..exceptions import ConfigurationError
from ..principal import Principal, get_principal
from ._jsonrpc import (
    INSUFFICIENT_SCOPE,
    INVALID_REQUEST,
    PARSE_ERROR,
    UNAUTHORIZED,
    Call,
    RequestId,
    calls,
    error_payload,
    send_error,
)

__all__ = ["MCPScopeMiddleware"]

# RFC 6749 section 3.3 scope-token: printable ASCII without space, '"' and '\'
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# what may appear inside a quoted challenge parameter (RFC 6750 section 3)
_UNQUOTABLE: Final = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_PREFIX: Final = "aimiddleware.mcp."
# where OAuthMiddleware leaves its challenge settings for the layers inside it, so that their
# refusals name the same metadata URL and realm as its own
_OAUTH_CHALLENGER_KEY: Final = "aimiddleware.oauth.challenger"
# MCP tool names are 1-128 characters; a longer one (attacker-chosen) is cut before it goes
# into a header, a span attribute or a log line
_MAX_NAME: Final = 128


def _shown(name: str) -> str:
    return name if len(name) <= _MAX_NAME else name[: _MAX_NAME - 3] + "..."


def _scopes(value: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigurationError(f"{what}: give a list of scopes, not one string ({value!r})")
    scopes = tuple(dict.fromkeys(value))
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE_TOKEN.fullmatch(scope):
            raise ConfigurationError(f"{what}: {scope!r} is not an RFC 6749 scope token")
    return scopes


def _quote(value: str) -> str:
    return '"' + _UNQUOTABLE.sub("?", value) + '"'


class MCPScopeMiddleware:
    """Authorise MCP requests by the scopes of the caller's :class:`~aimiddleware.Principal`.

    Sits inside the auth middleware (``OAuthMiddleware`` or any middleware that calls
    :func:`~aimiddleware.set_principal`) and in front of an MCP server's Streamable HTTP
    endpoint. Every request needs ``scopes``; a ``tools/call`` also needs the scopes of its tool
    (``tools``, else ``default_tool_scopes``) and any JSON-RPC method the scopes in ``methods``.

    Refusals follow the MCP authorization spec: 401 with a ``Bearer`` challenge when there is no
    principal, 403 with ``error="insufficient_scope"`` and ``scope="<every scope the request
    needs>"`` for step-up, ``resource_metadata`` (RFC 9728) in both. The body is a JSON-RPC error
    carrying the request's id, so MCP clients surface it as the call's error.

    :param scopes: scopes every request to the endpoint needs (default ``["mcp"]``).
    :param tools: tool name -> scopes that calling it needs, on top of ``scopes``.
    :param default_tool_scopes: scopes a tool missing from ``tools`` needs (default none;
        set it to deny tools added later without a mapping).
    :param methods: JSON-RPC method -> scopes (``{"resources/read": ["files:read"]}``).
    :param resource_metadata: the RFC 9728 metadata URL put into challenges; by default the
        one of the ``OAuthMiddleware`` in front, if any.
    :param realm: an optional ``realm`` for challenges (by default the OAuth middleware's).
    :param max_body: request bodies above this many bytes are refused with 413.

    Example::

        app = MCPScopeMiddleware(
            mcp_app,
            tools={"chat": ["chat"], "embeddings": ["embeddings"]},
            resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp",
        )
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        scopes: Iterable[str] = ("mcp",),
        tools: Mapping[str, Iterable[str]] | None = None,
        default_tool_scopes: Iterable[str] = (),
        methods: Mapping[str, Iterable[str]] | None = None,
        resource_metadata: str | None = None,
        realm: str | None = None,
        max_body: int = 4 * 1024 * 1024,
    ) -> None:
        self.app = app
        self.scopes = _scopes(scopes, "scopes")
        self.tools = {
            str(name): _scopes(needed, f"tools[{name!r}]") for name, needed in (tools or {}).items()
        }
        self.default_tool_scopes = _scopes(default_tool_scopes, "default_tool_scopes")
        self.methods = {
            str(name): _scopes(needed, f"methods[{name!r}]")
            for name, needed in (methods or {}).items()
        }
        if resource_metadata is not None and not resource_metadata.startswith(
            ("https://", "http://")
        ):
            raise ConfigurationError("resource_metadata must be an absolute http(s) URL")
        self.resource_metadata = resource_metadata
        self.realm = realm
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
            raise ConfigurationError("max_body must be a positive number of bytes")
        self.max_body = max_body

    def __repr__(self) -> str:
        return (
            f"MCPScopeMiddleware(scopes={list(self.scopes)!r}, "
            f"tools={ {k: list(v) for k, v in self.tools.items()}!r}, "
            f"methods={ {k: list(v) for k, v in self.methods.items()}!r}, "
            f"resource_metadata={self.resource_metadata!r})"
        )

    def required(self, call: Call) -> tuple[str, ...]:
        """Every scope ``call`` needs, the endpoint's first.

        >>> from aimiddleware.mcp._jsonrpc import Call
        >>> MCPScopeMiddleware(None, tools={"chat": ["chat"]}).required(
        ...     Call("tools/call", 1, "chat"))
        ('mcp', 'chat')
        """
        needed = list(self.scopes)
        needed += self.methods.get(call.method, ())
        if call.method == "tools/call":
            needed += self.tools.get(call.tool or "", self.default_tool_scopes)
        return tuple(dict.fromkeys(needed))

    def _from_oauth(self, scope: Scope, name: str) -> str | None:
        value = getattr(scope.get(_OAUTH_CHALLENGER_KEY), name, None)
        return value if isinstance(value, str) else None

    def _challenge(
        self, scope: Scope, error: str | None, description: str, scopes: Iterable[str]
    ) -> bytes:
        realm = self.realm if self.realm is not None else self._from_oauth(scope, "realm")
        metadata = self.resource_metadata
        if metadata is None:
            metadata = self._from_oauth(scope, "resource_metadata")
        params = []
        if realm is not None:
            params.append(f"realm={_quote(realm)}")
        if error is not None:
            params.append(f"error={_quote(error)}")
            params.append(f"error_description={_quote(description)}")
        needed = " ".join(scopes)
        if needed:
            params.append(f"scope={_quote(needed)}")
        if metadata is not None:
            params.append(f"resource_metadata={_quote(metadata)}")
        return ("Bearer " + ", ".join(params)).encode("latin-1") if params else b"Bearer"

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        status: int,
        code: int,
        message: str,
        request_id: RequestId,
        needed: tuple[str, ...],
        data: dict[str, object],
    ) -> None:
        error = "insufficient_scope" if status == 403 else None
        challenge = self._challenge(scope, error, message, needed)
        payload = error_payload(code, message, request_id, data)
        await send_error(send, status, payload, [(b"www-authenticate", challenge)])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        principal = get_principal(scope)
        if principal is None:
            annotate(scope, _PREFIX + "outcome", "unauthenticated")
            message = "Unauthorized: this MCP server needs an access token"
            data: dict[str, object] = {"error": "unauthorized", "scope": " ".join(self.scopes)}
            await self._refuse(scope, send, 401, UNAUTHORIZED, message, None, self.scopes, data)
            return
        if scope.get("method") == "POST":
            try:
                _, receive = await read_body(scope, receive, limit=self.max_body)
            except ClientDisconnected:
                return
            except RequestBodyTooLarge:
                annotate(scope, _PREFIX + "outcome", "body_too_large")
                await send_error(
                    send,
                    413,
                    error_payload(
                        INVALID_REQUEST, f"the request body exceeds {self.max_body} bytes"
                    ),
                )
                return
            body = json_body(scope)
            if body is None:
                # fail closed: what cannot be read here cannot be authorised
                annotate(scope, _PREFIX + "outcome", "parse_error")
                await send_error(
                    send, 400, error_payload(PARSE_ERROR, "the request body is not valid JSON")
                )
                return
            found = list(calls(body))
        else:
            # GET opens the server's event stream, DELETE ends a session: the endpoint's scopes
            found = []
        if await self._authorise(scope, send, principal, found):
            await self.app(scope, receive, send)

    async def _authorise(
        self, scope: Scope, send: Send, principal: Principal, found: list[Call]
    ) -> bool:
        if len(found) == 1:
            annotate(scope, _PREFIX + "method", _shown(found[0].method))
            if found[0].tool is not None:
                annotate(scope, _PREFIX + "tool", _shown(found[0].tool))
        needed: dict[str, None] = dict.fromkeys(self.scopes)
        refused: Call | None = None
        # the challenge names every scope the whole request needs, so one step-up suffices
        for call in found:
            required = self.required(call)
            needed.update(dict.fromkeys(required))
            if refused is None and not principal.has_scopes(required):
                refused = call
        if refused is None and principal.has_scopes(self.scopes):
            annotate(scope, _PREFIX + "outcome", "allowed")
            return True
        annotate(scope, _PREFIX + "outcome", "insufficient_scope")
        scopes = tuple(needed)
        missing = [s for s in scopes if s not in principal.scopes]
        what = "scope" if len(missing) == 1 else "scopes"
        if refused is not None and refused.tool is not None:
            subject = f"the tool {_shown(refused.tool)!r}"
        elif refused is not None and refused.method in self.methods:
            subject = refused.method
        else:
            subject = "this MCP server"
        message = f"Forbidden: {subject} needs the {what} {' '.join(missing)}"
        data: dict[str, object] = {
            "error": "insufficient_scope",
            "scope": " ".join(scopes),
            "missing_scopes": missing,
        }
        if refused is not None and refused.tool is not None:
            data["tool"] = _shown(refused.tool)
        # one refusal per HTTP request: a batch is refused whole (id null), a single call by id
        request_id = found[0].id if len(found) == 1 else None
        await self._refuse(scope, send, 403, INSUFFICIENT_SCOPE, message, request_id, scopes, data)
        return False
