"""HTTP semantic-convention attributes read from an ASGI scope, and context propagation in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .._asgi import Scope
from .._lru import Memo
from . import _semconv as sc


class HeaderGetter(Getter[Sequence[Sequence[bytes]]]):
    """Reads W3C ``traceparent``/``tracestate``/``baggage`` from raw ASGI headers."""

    def get(self, carrier: Sequence[Sequence[bytes]], key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        # ASGI servers lower-case request header names; the slower comparison is for others
        values = [
            value.decode("latin-1")
            for key_, value in carrier
            if key_ == name or key_.lower() == name
        ]
        return values or None

    def keys(self, carrier: Sequence[Sequence[bytes]]) -> list[str]:
        return [key.decode("latin-1") for key, _ in carrier]


HEADER_GETTER = HeaderGetter()

# propagators known to read their declared fields and nothing else (some others also read
# prefixed keys, e.g. OT's ot-baggage-*, which their fields do not list)
_FIELDS_ONLY: tuple[type[TextMapPropagator], ...] = (
    TraceContextTextMapPropagator,
    W3CBaggagePropagator,
)


def declared_fields(propagator: TextMapPropagator) -> frozenset[bytes] | None:
    """The lower-case header names ``propagator`` reads, or ``None`` if it may read others.

    A request carrying none of them extracts exactly as one without headers, which spares
    every propagator its scan of the request's headers.
    """
    if type(propagator) is CompositePropagator:
        parts = getattr(propagator, "_propagators", None)
        if not isinstance(parts, list | tuple):
            return None
        names: set[bytes] = set()
        for part in parts:
            fields = declared_fields(part)
            if fields is None:
                return None
            names |= fields
        return frozenset(names)
    if type(propagator) in _FIELDS_ONLY:
        return frozenset(field.lower().encode("latin-1") for field in propagator.fields)
    return None


def carries_any(headers: Sequence[Sequence[bytes]], names: frozenset[bytes]) -> bool:
    """Whether a header of ``names`` is among ``headers`` (names compared case-insensitively)."""
    for name, _ in headers:  # noqa: SIM110 (a plain loop: any() over a generator costs more)
        if name in names or name.lower() in names:
            return True
    return False


# what one pass over the request headers looks for: slots of the list read_headers returns
HOST: Final = 0
USER_AGENT: Final = 1
CONTENT_LENGTH: Final = 2
TRACE_CONTEXT: Final = 3  # any header the propagator declares
_SLOTS: Final = {b"host": HOST, b"user-agent": USER_AGENT, b"content-length": CONTENT_LENGTH}


def header_lookup(fields: frozenset[bytes] | None) -> dict[bytes, int]:
    """Header name -> slot for :func:`read_headers`, with the propagator's ``fields``."""
    lookup = dict(_SLOTS)
    for field in fields or ():
        lookup.setdefault(field, TRACE_CONTEXT)
    return lookup


def read_headers(headers: Sequence[Sequence[bytes]], lookup: dict[bytes, int]) -> list[Any]:
    """The first value of each header in ``lookup``, by slot, in one pass over ``headers``.

    >>> read_headers([(b"host", b"a:1"), (b"User-Agent", b"x")], header_lookup(None))
    [b'a:1', b'x', None, None]
    """
    found: list[Any] = [None, None, None, None]
    for name, value in headers:
        slot = lookup.get(name)
        # ASGI servers lower-case request header names; the second look is for others
        if slot is None and (name.islower() or (slot := lookup.get(name.lower())) is None):
            continue
        if found[slot] is None:
            found[slot] = value
    return found


def method_name(method: str) -> str:
    """The method as the conventions name it (``_OTHER`` for unknown ones)."""
    if method in sc.KNOWN_METHODS:
        return method
    upper = method.upper()
    return upper if upper in sc.KNOWN_METHODS else "_OTHER"


def _split_host(host: str) -> tuple[str, int | None]:
    if host.startswith("["):  # [::1]:8000
        end = host.find("]")
        address, rest = host[1:end], host[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        address, _, port = host.partition(":")
    return address, int(port) if port.isdigit() else None


# Host header -> (server.address, server.port): a server answers to a handful of names, so
# the split is done once per name; past the bound (a client sending random names) it is done
# per request and not kept
_server: Memo[bytes, tuple[str, int | None]] = Memo(
    lambda host: _split_host(host.decode("latin-1")), 256
)


def request_attributes(
    scope: Scope, method: str, host: bytes | None, user_agent: bytes | None
) -> dict[str, Any]:
    """Attributes known when the request arrives (the ones samplers may look at).

    ``method`` is the one :func:`method_name` returned. Values are already of the types the
    SDK keeps (str, int), so its cleaning has nothing to convert.
    """
    attributes: dict[str, Any] = {
        sc.HTTP_REQUEST_METHOD: method,
        sc.URL_SCHEME: scope.get("scheme", "http"),
        sc.URL_PATH: scope.get("path", ""),
    }
    original = scope.get("method", "GET")
    if original != method:
        attributes[sc.HTTP_REQUEST_METHOD_ORIGINAL] = original
    version = scope.get("http_version")
    if version:
        attributes[sc.NETWORK_PROTOCOL_VERSION] = version
    if host:
        address, port = _server(host)
        attributes[sc.SERVER_ADDRESS] = address
        if port is not None:
            attributes[sc.SERVER_PORT] = port
    else:
        server = scope.get("server")
        if server:
            attributes[sc.SERVER_ADDRESS] = server[0]
            if len(server) > 1 and server[1] is not None:
                attributes[sc.SERVER_PORT] = server[1]
    client = scope.get("client")
    if client:  # client.port is opt-in in the conventions: left out
        attributes[sc.CLIENT_ADDRESS] = client[0]
    if user_agent:
        attributes[sc.USER_AGENT_ORIGINAL] = user_agent.decode("latin-1")
    return attributes
