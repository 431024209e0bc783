"""Answers that end without stating their usage: charged an estimate, and said so.

A successful LLM answer normally states its ``usage`` (a JSON body's, or the usage chunk of a
stream the limiter asked for). When it does not (a proxy that rebuilt the request without
``stream_options``, an upstream that drops it), the limiter charges an estimate (for a stream
the prompt's estimate and a token per chunk, else the reservation); the request is marked
``aimiddleware.ratelimit.usage_missing`` (on the span and in the access log) and one warning
per route says what to fix.
"""

from __future__ import annotations

import logging
from typing import Final

from .._lru import LRUCache
from ..context import Scope, annotate, route_path

__all__ = ["report_usage_missing"]

logger = logging.getLogger("aimiddleware.ratelimit")

_WARNING: Final = (
    "rate limits: a %s answer on %s ended without stating its usage; it was charged an "
    "estimate of %d tokens. If the app proxies another server, forward the request body "
    "as received (with stream_options) and the upstream's usage (docs/recipes.md, "
    "'Proxying an upstream'). Said once per route."
)


# routes already warned about; bounded like every table kept per client input (a route seen
# again after its entry was evicted is warned about again, which is harmless)
_WARNED: Final[LRUCache[str, bool]] = LRUCache("usage warnings", 1024)


def report_usage_missing(scope: Scope, charged: int, *, stream: bool) -> None:
    """Mark the request and, the first time on its route, warn once."""
    annotate(scope, "aimiddleware.ratelimit.usage_missing", True)
    route = route_path(scope)
    if route in _WARNED:
        return
    _WARNED.put(route, True, 0.0)
    logger.warning(_WARNING, "streamed" if stream else "JSON", route, charged)
