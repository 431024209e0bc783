"""``python -m testkit.serve MODULE:APP --fd N [--workers N] [--factory]``: uvicorn on an
inherited socket.

The test binds the socket and hands it down (:mod:`testkit.processes`). ``uvicorn --fd`` is not
used: it wraps the descriptor as a Unix socket (``socket.fromfd(fd, AF_UNIX, ...)``), so its TCP
connections would not be set up as TCP ones (no TCP_NODELAY under asyncio, for one).
"""

from __future__ import annotations

import argparse
import inspect
import socket

import uvicorn
from uvicorn.supervisors import Multiprocess


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testkit.serve")
    parser.add_argument("app", help="MODULE:APP")
    parser.add_argument("--fd", type=int, required=True, help="a bound TCP socket")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--factory", action="store_true", help="APP is a function making it")
    args = parser.parse_args(argv)
    sock = socket.socket(fileno=args.fd)  # family and type read from the descriptor
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        args.app,
        factory=args.factory,
        host=host,
        port=port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    if args.workers == 1:
        uvicorn.Server(config).run(sockets=[sock])
    elif "target" in inspect.signature(Multiprocess).parameters:  # uvicorn before 0.30
        Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock]).run()  # type: ignore[call-arg]
    else:
        Multiprocess(config, sockets=[sock]).run()


if __name__ == "__main__":
    main()
