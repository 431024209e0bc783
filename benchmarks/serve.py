"""Serve one benchmark configuration.

``python -m benchmarks.serve NAME --fd N`` runs one uvicorn process on the bound socket it
inherits as file descriptor N (``testkit.processes`` binds it, so the port is never raced for);
for several workers, uvicorn imports :func:`factory` by name (``AIMW_BENCH_CONFIG=NAME python -m
testkit.serve benchmarks.serve:factory --factory --workers 4 --fd N``), so that every worker
builds its own app.
"""

from __future__ import annotations

import argparse
import os
import socket

import uvicorn

from .apps import ASGIApp
from .registry import CONFIGS


def factory() -> ASGIApp:
    """The app of the configuration named by ``AIMW_BENCH_CONFIG``.

    Example: ``AIMW_BENCH_CONFIG=bare uvicorn benchmarks.serve:factory --factory --workers 2``
    """
    return CONFIGS[os.environ["AIMW_BENCH_CONFIG"]].factory()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve")
    parser.add_argument("name", choices=sorted(CONFIGS))
    parser.add_argument("--fd", type=int, required=True, help="a bound TCP socket")
    args = parser.parse_args()
    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(
        CONFIGS[args.name].factory(),
        host="127.0.0.1",
        port=sock.getsockname()[1],
        log_level="warning",
        access_log=False,
        lifespan="auto",
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
