"""MCPScopeMiddleware: OAuth scopes per MCP endpoint, per tool and per JSON-RPC method."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from .._config import build_options
from .._signatures import options_signature, show_options
from ..context import (
    ASGIApp,
    ClientDisconnected,
    Receive,
    RequestBodyTooLarge,
    Scope,
    Send,
    annotate,
    get_challenger,
    get_principal,
    json_body,
    read_body,
)
from ..principal import Principal
from ._headers import mismatch
from ._jsonrpc import (
    HEADER_MISMATCH,
    INSUFFICIENT_SCOPE,
    INVALID_REQUEST,
    PARSE_ERROR,
    UNAUTHORIZED,
    Call,
    RequestId,
    calls,
    error_payload,
    refuse_tool,
    send_error,
    shown,
)
from ._options import MCPScopeOptions
from ._scopes import challenge, implications

__all__ = ["MCPScopeMiddleware"]

_PREFIX: Final = "aimiddleware.mcp."


class MCPScopeMiddleware:
    """Authorise MCP requests by the scopes of the caller's :class:`~aimiddleware.Principal`.

    Sits inside the auth middleware (``OAuthMiddleware`` or any middleware that calls
    :func:`~aimiddleware.set_principal`) and in front of an MCP server's Streamable HTTP
    endpoint. Every request needs ``scopes``; a ``tools/call`` also needs the scopes of its tool
    (``tools``) and any JSON-RPC method the scopes in ``methods``. A tool that ``tools`` does not
    map is refused (403) unless ``allow_unmapped_tools``. A JSON-RPC body is checked whatever
    the HTTP method carries it, and its ``Mcp-Method``/``Mcp-Name`` headers (protocol revision
    2026-07-28) must agree with it (else 400, ``HeaderMismatch``) before any scope is decided.

    Refusals follow the MCP authorization spec: 401 with a ``Bearer`` challenge when there is no
    principal, 403 with ``error="insufficient_scope"`` and ``scope="<every scope the request
    needs>"`` for step-up, ``resource_metadata`` (RFC 9728) in both. The body is a JSON-RPC error
    carrying the request's id, so MCP clients surface it as the call's error.


    The options are keywords or one :class:`MCPScopeOptions` as ``config``.

    Example::

        app = MCPScopeMiddleware(
            mcp_app,
            tools={"chat": ["chat"], "embeddings": ["embeddings"]},
            resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp",
        )
    """

    def __init__(self, app: ASGIApp, config: MCPScopeOptions | None = None, **options: Any) -> None:
        self.app = app
        self.config = config = build_options("MCPScopeMiddleware", MCPScopeOptions, config, options)
        self.scopes: tuple[str, ...] = tuple(config.scopes)
        self.tools = {name: tuple(needed) for name, needed in (config.tools or {}).items()}
        self.allow_unmapped_tools = config.allow_unmapped_tools
        self.default_tool_scopes: tuple[str, ...] = tuple(config.default_tool_scopes)
        self.methods = {name: tuple(needed) for name, needed in (config.methods or {}).items()}
        self.resource_metadata = config.resource_metadata
        self.implied_scopes = implications(config.implied_scopes)
        self.realm = config.realm
        self.max_body = config.max_body

    def __repr__(self) -> str:
        return (
            f"MCPScopeMiddleware(scopes={list(self.scopes)!r}, "
            f"tools={ {k: list(v) for k, v in self.tools.items()}!r}, "
            f"allow_unmapped_tools={self.allow_unmapped_tools!r}, "
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

    def unmapped(self, call: Call) -> bool:
        """Whether ``call`` is a ``tools/call`` of a tool no rule maps, and so refused."""
        return (
            call.method == "tools/call"
            and not self.allow_unmapped_tools
            and (call.tool is None or call.tool not in self.tools)
        )

    def granted(self, principal: Principal) -> frozenset[str]:
        """The principal's scopes with every scope they imply (``implied_scopes``)."""
        if not self.implied_scopes:
            return principal.scopes
        granted = set(principal.scopes)
        for scope in principal.scopes:
            granted.update(self.implied_scopes.get(scope, ()))
        return frozenset(granted)

    def _from_oauth(self, scope: Scope, name: str) -> str | None:
        value = getattr(get_challenger(scope), name, None)
        return value if isinstance(value, str) else None

    def _challenge(
        self, scope: Scope, error: str | None, description: str, scopes: Iterable[str]
    ) -> list[bytes]:
        metadata = self.resource_metadata
        if metadata is None:
            metadata = self._from_oauth(scope, "resource_metadata")
        return challenge(
            realm=self.realm if self.realm is not None else self._from_oauth(scope, "realm"),
            error=error,
            description=description,
            scopes=scopes,
            metadata=metadata,
        )

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
        challenges = self._challenge(scope, error, message, needed)
        payload = error_payload(code, message, request_id, data)
        await send_error(send, status, payload, [(b"www-authenticate", c) for c in challenges])

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
        # every method's body is read: a server may act on a JSON-RPC body sent with PUT, and
        # what reaches it must be what was checked here
        try:
            raw, receive = await read_body(scope, receive, limit=self.max_body)
        except ClientDisconnected:
            return
        except RequestBodyTooLarge:
            annotate(scope, _PREFIX + "outcome", "body_too_large")
            await send_error(
                send,
                413,
                error_payload(INVALID_REQUEST, f"the request body exceeds {self.max_body} bytes"),
            )
            return
        body = None
        if raw or scope.get("method") == "POST":
            body = json_body(scope)
            if body is None:
                # fail closed: what cannot be read here cannot be authorised
                annotate(scope, _PREFIX + "outcome", "parse_error")
                await send_error(
                    send, 400, error_payload(PARSE_ERROR, "the request body is not valid JSON")
                )
                return
        # without a body (GET opens the event stream, DELETE ends a session): the endpoint's scopes
        found = [] if body is None else list(calls(body))
        disagreement = mismatch(scope.get("headers", ()), body)
        if disagreement is not None:
            annotate(scope, _PREFIX + "outcome", "header_mismatch")
            request_id = found[0].id if len(found) == 1 and isinstance(body, dict) else None
            payload = error_payload(HEADER_MISMATCH, "Header mismatch: " + disagreement, request_id)
            await send_error(send, 400, payload)
            return
        if await self._authorise(scope, send, principal, found):
            await self.app(scope, receive, send)

    async def _authorise(
        self, scope: Scope, send: Send, principal: Principal, found: list[Call]
    ) -> bool:
        if len(found) == 1:
            annotate(scope, _PREFIX + "method", shown(found[0].method))
            if found[0].tool is not None:
                annotate(scope, _PREFIX + "tool", shown(found[0].tool))
        granted = self.granted(principal)
        if granted.issuperset(self.scopes):
            closed = next((call for call in found if self.unmapped(call)), None)
            if closed is not None:
                annotate(scope, _PREFIX + "outcome", "tool_not_allowed")
                await refuse_tool(send, closed, found[0].id if len(found) == 1 else None)
                return False
        needed: dict[str, None] = dict.fromkeys(self.scopes)
        refused: Call | None = None
        # the challenge names every scope the whole request needs, so one step-up suffices
        for call in found:
            required = self.required(call)
            needed.update(dict.fromkeys(required))
            if refused is None and not granted.issuperset(required):
                refused = call
        if refused is None and granted.issuperset(self.scopes):
            annotate(scope, _PREFIX + "outcome", "allowed")
            return True
        annotate(scope, _PREFIX + "outcome", "insufficient_scope")
        scopes = tuple(needed)
        missing = [s for s in scopes if s not in granted]
        what = "scope" if len(missing) == 1 else "scopes"
        if refused is not None and refused.tool is not None:
            subject = f"the tool {shown(refused.tool)!r}"
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
            data["tool"] = shown(refused.tool)
        # one refusal per HTTP request: a batch is refused whole (id null), a single call by id
        request_id = found[0].id if len(found) == 1 else None
        await self._refuse(scope, send, 403, INSUFFICIENT_SCOPE, message, request_id, scopes, data)
        return False


show_options(MCPScopeMiddleware.__init__, options_signature(MCPScopeOptions))
