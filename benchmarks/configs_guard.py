"""Benchmark configurations of RequestGuardMiddleware on the JSON endpoint.

Listed in :mod:`benchmarks.registry`. ``guard:alone`` is the guard at its defaults
(the body is timed, its Content-Length checked); ``guard:length-only`` turns the timer off, so
a request with a Content-Length under the limit goes straight to the app.
"""

from __future__ import annotations

from aimiddleware.guard import RequestGuardMiddleware

from .apps import ASGIApp, Config, bare_app


def _guard_alone() -> ASGIApp:
    return RequestGuardMiddleware(bare_app())


def _guard_length_only() -> ASGIApp:
    return RequestGuardMiddleware(bare_app(), body_timeout=None)


CONFIGS = [
    Config(
        "guard:alone",
        _guard_alone,
        group="guard",
        description="RequestGuardMiddleware at its defaults around the JSON endpoint",
    ),
    Config(
        "guard:length-only",
        _guard_length_only,
        group="guard",
        description="RequestGuardMiddleware without a body timeout around the JSON endpoint",
    ),
]
