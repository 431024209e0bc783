"""The request metadata headers of MCP's Streamable HTTP transport (protocol revision 2026-07-28).

A 2026-07-28 client mirrors the JSON-RPC ``method`` into ``Mcp-Method``, the name a call acts on
(``params.name`` of ``tools/call`` and ``prompts/get``, ``params.uri`` of ``resources/read``)
into ``Mcp-Name``, and the protocol version of the body's ``_meta`` into ``MCP-Protocol-Version``,
so that gateways route and meter without reading the body. A server that reads the body must
refuse a request whose headers disagree with it (400, ``HeaderMismatch``): otherwise whatever
trusts ``Mcp-Name: list_models`` lets through a body that calls ``chat``.

Clients of earlier revisions send none of these: their requests are judged on the body alone.
A header that is present is always held to the body, whatever revision the client speaks.
``Mcp-Param-*`` headers need the tool's input schema, and an extension method's ``Mcp-Name``
the extension's definition: both are left to the MCP server.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Final

from .._asgi import RawHeaders
from ._jsonrpc import shown

__all__ = ["FIRST_REVISION", "NAME_PARAMS", "mismatch"]

FIRST_REVISION: Final = "2026-07-28"
VERSION_META_KEY: Final = "io.modelcontextprotocol/protocolVersion"
# method -> the params member its Mcp-Name mirrors
NAME_PARAMS: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

_VERSION: Final = b"mcp-protocol-version"
_METHOD: Final = b"mcp-method"
_NAME: Final = b"mcp-name"
_SPELLED: Final = {_VERSION: "MCP-Protocol-Version", _METHOD: "Mcp-Method", _NAME: "Mcp-Name"}
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_SENTINEL: Final = re.compile(r"=\?base64\?(.*)\?=", re.DOTALL)


def _requires_headers(version: object) -> bool:
    return (
        isinstance(version, str)
        and version >= FIRST_REVISION
        and _DATE.fullmatch(version) is not None
    )


def _plain(raw: bytes) -> str | None:
    # the transport allows visible ASCII and space in these values; anything else is wrapped
    # in base64 by the client
    if not raw.isascii():
        return None
    text = raw.decode("ascii")
    return text if text.isprintable() else None


def decode_name(raw: bytes) -> str | None:
    """An ``Mcp-Name`` value as the client meant it, or ``None`` when it is malformed.

    >>> decode_name(b"=?base64?bcOpdMOpbw==?=")
    'météo'
    """
    text = _plain(raw)
    if text is None:
        return None
    match = _SENTINEL.fullmatch(text) if text.startswith("=?base64?") else None
    if match is None:
        return text
    payload = match.group(1)
    try:
        decoded = base64.b64decode(payload, validate=True)
        # one spelling per value: a non-canonical encoding (stray trailing bits) is refused
        if base64.b64encode(decoded).decode("ascii") != payload:
            return None
        return decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _differs(header: str, value: str, body: object) -> str:
    return f"{header} header value {shown(value)!r} does not match body value {_body(body)}"


def _body(value: object) -> str:
    if isinstance(value, str):
        return repr(shown(value))
    return "(none)" if value is None else "(not a string)"


def mismatch(headers: RawHeaders, body: Any) -> str | None:
    """Why the request's MCP headers disagree with its JSON-RPC ``body`` (``None``: no body),
    or ``None`` when they agree or were not sent."""
    values: dict[bytes, bytes] = {}
    for raw_key, value in headers:
        key = raw_key.lower()
        if key in _SPELLED:
            if key in values:
                return f"the {_SPELLED[key]} header appears more than once"
            values[key] = value
    version, method, name = values.get(_VERSION), values.get(_METHOD), values.get(_NAME)
    if body is None:
        if method is not None or name is not None:
            return "Mcp-Method or Mcp-Name header on a request without a JSON-RPC body"
        return None
    message = body if isinstance(body, dict) else None
    params = message.get("params") if message is not None else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    body_version = meta.get(VERSION_META_KEY) if isinstance(meta, dict) else None
    required = _requires_headers(body_version)
    if version is not None:
        text = _plain(version)
        if text is None:
            return "the MCP-Protocol-Version header holds bytes a header value may not"
        if body_version is not None and text != body_version:
            return _differs("MCP-Protocol-Version", text, body_version)
        required = required or _requires_headers(text)
    elif body_version is not None:
        return "the MCP-Protocol-Version header is missing"
    if method is None:
        return "the Mcp-Method header is missing" if required else _name_without_method(name)
    if message is None:
        return "the headers describe one JSON-RPC message and the body is a batch"
    body_method = message.get("method")
    text = _plain(method)
    if text is None:
        return "the Mcp-Method header holds bytes a header value may not"
    if text != body_method:
        return _differs("Mcp-Method", text, body_method)
    member = NAME_PARAMS.get(text)
    body_name = params.get(member) if member is not None and isinstance(params, dict) else None
    if name is None:
        return "the Mcp-Name header is missing" if required and body_name is not None else None
    decoded = decode_name(name)
    if decoded is None:
        return "the Mcp-Name header is neither a plain header value nor valid base64 UTF-8"
    if member is None:
        # an extension's method (tasks/get...) mirrors a parameter of its own choosing, which
        # only the server knows; no scope here depends on it
        return None
    if decoded != body_name:
        return _differs("Mcp-Name", decoded, body_name)
    return None


def _name_without_method(name: bytes | None) -> str | None:
    # a client of an earlier revision sends neither header; one without the other is no client's
    return None if name is None else "an Mcp-Name header without Mcp-Method"
