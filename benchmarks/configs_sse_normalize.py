"""Benchmark configurations of SSEMiddleware and NormalizeMiddleware on the JSON endpoint.

Listed in :mod:`benchmarks.registry`; each wraps the same bare app with one middleware
at its defaults, so the ratio to ``bare`` is that middleware's cost on a non-stream request.
"""

from __future__ import annotations

from aimiddleware.normalize import NormalizeMiddleware
from aimiddleware.sse import SSEMiddleware

from .apps import ASGIApp, Config, bare_app


def _sse_alone() -> ASGIApp:
    return SSEMiddleware(bare_app())


def _normalize_alone() -> ASGIApp:
    return NormalizeMiddleware(bare_app())


CONFIGS = [
    Config(
        "sse:alone",
        _sse_alone,
        group="sse",
        description="SSEMiddleware at its defaults around the JSON endpoint",
    ),
    Config(
        "normalize:alone",
        _normalize_alone,
        group="normalize",
        description="NormalizeMiddleware at its defaults around the JSON endpoint",
    ),
]
