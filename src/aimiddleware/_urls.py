"""URL normalisation: the one place that decides when two http(s) URLs or origins are the same.

DPoP compares a proof's ``htu`` with the request's URL (RFC 9449 section 4.3), the MCP origin
guard compares an ``Origin`` header with its allow-list (RFC 6454): both compare after the same
RFC 3986 section 6.2.2/6.2.3 normalisation of scheme, host and port.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

__all__ = ["normalize_url"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT: Final = re.compile(r"%([0-9A-Fa-f]{2})")


def _percent(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, for an absolute path."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def normalize_url(value: str, *, origin: bool = False) -> str | None:
    """``value`` normalised, or ``None`` when it is no http(s) URL (or has user info).

    Scheme and host in lower case, the scheme's default port dropped (RFC 3986 section
    6.2.2/6.2.3). With ``origin=True`` the value must be a serialised origin
    (``scheme://host[:port]``, RFC 6454: no path, query or fragment) and that is what comes
    back; else the path is normalised too (percent-encodings in upper case, unreserved
    characters decoded, dot segments removed, empty path ``/``) and query and fragment are
    dropped, as DPoP's ``htu`` comparison wants.

    >>> normalize_url("HTTPS://API.Example:443/a/./b/../%7euser%2f?q=1#f")
    'https://api.example/a/~user%2F'
    >>> normalize_url("HTTPS://App.Example.com:443", origin=True)
    'https://app.example.com'
    >>> normalize_url("https://app.example.com/path", origin=True) is None
    True
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None  # a URL with credentials names no resource server and no origin
    host = parts.netloc.rpartition("@")[2].lower()  # keeps IPv6 brackets
    if port is not None:
        host = host.rpartition(":")[0]
        if port != _DEFAULT_PORTS[scheme]:
            host = f"{host}:{port}"
    elif host.endswith(":"):
        host = host[:-1]  # an empty port is the default one (RFC 3986 section 6.2.3)
    if origin:
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            return None
        return f"{scheme}://{host}"
    path = _remove_dot_segments(_PERCENT.sub(_percent, parts.path or "/"))
    return f"{scheme}://{host}{path}"
