"""How many worker processes serve this app, and the warning a per-process store deserves.

A per-process store (``MemoryStore``, the rate limiter's ``memory://``) behind several workers
gives each worker its own idempotency records, quotas and DPoP replay cache: a retry that
lands on another worker runs again, a client gets N times its quota. Nothing in ASGI says how
many workers there are, so the count is read from what starts them: the ``--workers`` (or
gunicorn's ``-w``) option in the command line, which uvicorn's and gunicorn's workers inherit,
``GUNICORN_CMD_ARGS``, and ``WEB_CONCURRENCY`` (the variable both servers read for their
default, and the one to set when a server is started some other way).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence

__all__ = ["warn_if_several_workers", "worker_count"]

logger = logging.getLogger("aimiddleware.stores")


def _workers_option(args: Sequence[str], short: bool) -> int | None:
    found = None
    for position, arg in enumerate(args):
        value: str | None = None
        if arg == "--workers" or (short and arg == "-w"):
            value = args[position + 1] if position + 1 < len(args) else None
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        elif short and arg.startswith("-w") and arg[2:].isdigit():
            value = arg[2:]
        if value is not None and value.isdigit():
            found = int(value)
    return found


def worker_count(
    environ: Mapping[str, str] | None = None, argv: Sequence[str] | None = None
) -> int:
    """The number of worker processes this app runs in, as far as can be told (else 1).

    >>> worker_count({"WEB_CONCURRENCY": "4"}, ["uvicorn", "app:app"])
    4
    >>> worker_count({}, ["gunicorn", "-w", "3", "app:app"])
    3
    """
    environ = os.environ if environ is None else environ
    argv = sys.argv if argv is None else argv
    program = os.path.basename(argv[0]) if argv else ""
    counts = [
        _workers_option(argv[1:], short="gunicorn" in program or "hypercorn" in program),
        _workers_option(shlex.split(environ.get("GUNICORN_CMD_ARGS", "")), short=True),
    ]
    concurrency = environ.get("WEB_CONCURRENCY", "").strip()
    if concurrency.isdigit():
        counts.append(int(concurrency))
    return max([1, *(c for c in counts if c is not None)])


def warn_if_several_workers(component: str, state: str) -> bool:
    """Log one warning when ``component``'s per-process ``state`` runs under several workers.

    Returns whether it warned. Middlewares call it once, at start-up or on the first request.
    """
    try:
        workers = worker_count()
    except ValueError:  # an unbalanced quote in GUNICORN_CMD_ARGS: the server will say so
        return False
    if workers <= 1:
        return False
    logger.warning(
        "%s keeps its %s in this process, but the app runs in %d worker processes: each "
        "worker has its own, so limits and guarantees hold per worker only; use a shared "
        "store (redis://) or a single worker",
        component,
        state,
        workers,
    )
    return True
