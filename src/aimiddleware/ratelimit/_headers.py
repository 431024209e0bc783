"""How the response fields are written (``_plan`` assembles them).

IETF ``RateLimit-Policy`` / ``RateLimit`` and OpenAI's ``x-ratelimit-*``.

IETF form (draft-ietf-httpapi-ratelimit-headers-10/-11): structured-field lists of items, one
per quota policy::

    RateLimit-Policy: "requests";q=600;w=60, "tokens";q=200000;w=60
    RateLimit: "requests";r=599;t=42, "tokens";r=199000;t=42

``qu`` takes only the units the draft registers ("requests", the default, "content-bytes",
"concurrent-requests"), so a token quota carries no ``qu``: its policy name says tokens, and
OpenAI's ``x-ratelimit-limit-tokens`` / ``-remaining-tokens`` / ``-reset-tokens`` carry the
token budget for clients that read those. On a 429 the exhausted policy's ``t`` and
``Retry-After`` are the same number of seconds.
"""

from __future__ import annotations

from typing import Final

from .._lru import Memo

__all__ = ["go_duration", "reset_duration"]


def go_duration(seconds: float) -> str:
    """A duration as OpenAI writes it in ``x-ratelimit-reset-*``: ``20ms``, ``1.5s``, ``6m0s``.

    >>> go_duration(360), go_duration(1.5), go_duration(0.02)
    ('6m0s', '1.5s', '20ms')
    """
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole_ms = round(seconds * 1000)
    hours, rest = divmod(whole_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _ms_duration(ms: int) -> bytes:
    # go_duration(ms / 1000) in whole numbers: no float to format (the same text, tested)
    if ms < 1000:
        return b"%dms" % max(0, ms)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    secs = (b"%d.%03d" % (whole, fraction)).rstrip(b"0") if fraction else b"%d" % whole
    if hours:
        return b"%dh%dm%bs" % (hours, minutes, secs)
    if minutes:
        return b"%dm%bs" % (minutes, secs)
    return secs + b"s"


# the reset of one window, per millisecond value; bounded, as a caller can make many values
_RESETS: Final[Memo[int, bytes]] = Memo(_ms_duration, 8192)


def reset_duration(ms: int) -> bytes:
    """:func:`go_duration` of ``ms`` milliseconds as header bytes, memoised.

    Busy callers see the same few resets many times a millisecond; formatting a duration
    costs more than the rest of the header together.

    >>> reset_duration(61_500)
    b'1m1.5s'
    """
    return _RESETS(ms)
