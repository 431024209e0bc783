"""Serve one benchmark configuration: ``python -m benchmarks.serve NAME PORT``."""

from __future__ import annotations

import sys

import uvicorn

from .apps import CONFIGS


def main() -> None:
    name, port = sys.argv[1], int(sys.argv[2])
    app = CONFIGS[name].factory()
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="auto"
    )


if __name__ == "__main__":
    main()
