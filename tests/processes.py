"""Server subprocesses on a socket the test binds: :mod:`testkit.processes`, shared with the
benchmarks; this module keeps the names the tests import."""

from __future__ import annotations

from testkit.processes import ServerProcess, listening, serving_process

__all__ = ["ServerProcess", "listening", "serving_process"]
