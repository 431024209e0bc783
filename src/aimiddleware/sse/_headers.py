"""Response headers of an event stream that proxies and CDNs neither buffer nor transform."""

from __future__ import annotations

from typing import Final

from .._asgi import RawHeaders

__all__ = ["cache_control", "stream_headers"]

# directives at least as strict as no-cache: with one of them the app's value is kept
_NO_CACHE: Final = frozenset({"no-cache", "no-store"})
_DROP: Final = frozenset({b"content-length", b"x-accel-buffering", b"cache-control"})
# RFC 9113 section 8.2.2: connection-specific fields are malformed in HTTP/2
_DROP_HTTP2: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


def cache_control(value: bytes | None) -> bytes:
    """The Cache-Control of a stream: ``no-cache, no-transform``, or the app's stricter value.

    >>> cache_control(None)
    b'no-cache, no-transform'
    >>> cache_control(b"no-store")
    b'no-store, no-transform'
    >>> cache_control(b"public, max-age=60")
    b'no-cache, no-transform'
    """
    if value:
        directives = [d.strip() for d in value.decode("latin-1").split(",") if d.strip()]
        names = {d.split("=", 1)[0].strip().lower() for d in directives}
        if names & _NO_CACHE:
            if "no-transform" not in names:
                directives.append("no-transform")
            return ", ".join(directives).encode("latin-1")
        if "private" in names:
            return b"private, no-cache, no-transform"
    return b"no-cache, no-transform"


def stream_headers(
    headers: RawHeaders, *, http2: bool, drop_encoding: bool
) -> list[tuple[bytes, bytes]]:
    """The headers of an event stream's ``http.response.start``, rewritten.

    No ``Content-Length`` (the stream has none), no ``Content-Encoding`` when the body will go out
    decoded, ``X-Accel-Buffering: no`` for nginx, Cache-Control per :func:`cache_control`, and on
    HTTP/2 no connection-specific fields.
    """
    out: list[tuple[bytes, bytes]] = []
    cache: bytes | None = None
    for name, value in headers:
        lower = name.lower()
        if lower in _DROP:
            if lower == b"cache-control":
                cache = value if cache is None else cache + b", " + value
            continue
        if drop_encoding and lower == b"content-encoding":
            continue
        if http2 and lower in _DROP_HTTP2:
            continue
        out.append((name, value))
    out.append((b"cache-control", cache_control(cache)))
    out.append((b"x-accel-buffering", b"no"))
    return out
