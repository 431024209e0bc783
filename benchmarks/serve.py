"""Serve one benchmark configuration.

``python -m benchmarks.serve NAME PORT`` runs one uvicorn process; for several workers, uvicorn
imports :func:`factory` by name (``AIMW_BENCH_CONFIG=NAME uvicorn benchmarks.serve:factory
--factory --workers 4``), so that every worker builds its own app.
"""

from __future__ import annotations

import os
import sys

import uvicorn

from .apps import CONFIGS, ASGIApp


def factory() -> ASGIApp:
    """The app of the configuration named by ``AIMW_BENCH_CONFIG``.

    Example: ``AIMW_BENCH_CONFIG=bare uvicorn benchmarks.serve:factory --factory --workers 2``
    """
    return CONFIGS[os.environ["AIMW_BENCH_CONFIG"]].factory()


def main() -> None:
    name, port = sys.argv[1], int(sys.argv[2])
    app = CONFIGS[name].factory()
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="auto"
    )


if __name__ == "__main__":
    main()
