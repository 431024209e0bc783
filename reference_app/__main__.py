"""``python -m reference_app serve [--host H] [--port P | --fd N] [--model PATH] ...``"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess


class _Server(uvicorn.Server):
    """uvicorn, but Ctrl-C / SIGTERM end with exit status 0 after the graceful shutdown
    (uvicorn re-raises the signal, which makes a clean stop look like a crash)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        log = logging.getLogger("reference_app")

        def stop(signum: int, frame: Any) -> None:
            log.info("shutting down: finishing or cancelling open streams (10 s at most)")
            self.handle_exit(signum, frame)

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run_workers(config: uvicorn.Config, sock: socket.socket) -> None:
    """``config.workers`` processes serving on ``sock``, as ``uvicorn.run`` would run them."""
    if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn before 0.30
        Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock]).run()
    else:
        Multiprocess(config, sockets=[sock]).run()


def _listener(fd: int | None, host: str, port: int) -> socket.socket | None:
    """The listening socket when uvicorn must not bind by name: one inherited as ``--fd``
    (from a supervisor, or a test that bound it first), or one bound here for port 0, so that
    the address it really has is known (and logged) before serving."""
    if fd is not None:
        sock = socket.socket(fileno=fd)  # family and type read from the descriptor
    elif port == 0:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
    else:
        return None
    sock.set_inheritable(True)
    return sock


def _serve(args: argparse.Namespace) -> int:
    from .app import create_app
    from .settings import Settings

    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "model": args.model,
            "instances": args.instances,
            "redis_url": args.redis_url,
            "demo": args.demo,
        }.items()
        if value is not None
    }
    settings = Settings(**overrides)
    sock = _listener(args.fd, settings.host, settings.port)
    if sock is not None:
        overrides["host"], overrides["port"] = sock.getsockname()[:2]
        settings = Settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(message)s", stream=sys.stdout)
    log = logging.getLogger("reference_app")
    log.info(
        "aimiddleware reference server: stores on %s",
        "Redis" if settings.redis_url else "memory (one process)",
    )
    if args.workers > 1 and not settings.redis_url:
        log.error(
            "refusing --workers %d with in-memory stores: each worker would keep its own "
            "idempotency records, rate-limit counts and DPoP replay cache, so a retry could run "
            "twice and every client would get %d times its quota. Share the stores with "
            "--redis-url redis://HOST:6379/0 (or AIMW_REDIS_URL), or run one worker.",
            args.workers,
            args.workers,
        )
        return 2
    if args.workers > 1:
        # every worker process builds its own app from the environment
        for key, value in overrides.items():
            os.environ[f"AIMW_{key.upper()}"] = str(value)
        log.info(
            "serving on http://%s:%d with %d workers", settings.host, settings.port, args.workers
        )
        config = uvicorn.Config(
            "reference_app.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=args.workers,
            log_level=settings.log_level,
            timeout_graceful_shutdown=10,
        )
        run_workers(config, sock if sock is not None else config.bind_socket())
        return 0
    if settings.auth:
        log.info(
            "auth on: export OPENAI_API_KEY=$(python -m reference_app token%s) "
            "(scopes: chat models:read embeddings mcp; AIMW_AUTH=0 turns auth off)",
            "" if settings.port == 8000 else f" --port {settings.port}",
        )
    if settings.demo and settings.auth:
        log.info(
            "demo mode: the playground at http://%s:%d/ gets 5-minute chat tokens from /demo/token "
            "(anyone who reaches this address can)",
            settings.host,
            settings.port,
        )
    app = create_app(settings)
    log.info(
        "serving on http://%s:%d (OpenAI base_url http://%s:%d/v1)",
        settings.host,
        settings.port,
        settings.host,
        settings.port,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )
    _Server(config).run(sockets=None if sock is None else [sock])
    log.info("stopped")
    return 0


def _token(args: argparse.Namespace) -> int:
    from .auth import mint
    from .settings import Settings

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    if args.url:
        overrides["public_url"] = args.url
    settings = Settings(**overrides)
    # stdout carries the token alone: export OPENAI_API_KEY=$(python -m reference_app token)
    token = mint(
        settings,
        scope=args.scope,
        tier=args.tier,
        client_id=args.client_id,
        subject=args.subject,
        ttl=args.ttl,
    )
    print(token)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_app")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the OpenAI-compatible server")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000; 0: any free port, logged)")
    serve.add_argument(
        "--fd", type=int, help="listen on this inherited, bound socket instead of --host/--port"
    )
    serve.add_argument("--model", type=Path, help="a GGUF file (default: the bundled SmolLM2)")
    serve.add_argument("--instances", type=int, help="model instances (default 1)")
    serve.add_argument("--redis-url", help="share stores through Redis (default: in memory)")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument(
        "--demo",
        action="store_true",
        default=None,
        help="hand the playground short-lived tokens at /demo/token (local demos only)",
    )
    serve.set_defaults(handler=_serve)
    token = commands.add_parser(
        "token", help="print an access token the demo server trusts (development issuer)"
    )
    token.add_argument(
        "--scope", default="chat models:read embeddings mcp", help="space-separated scopes"
    )
    token.add_argument("--tier", help="rate-limit tier claim (e.g. agent)")
    token.add_argument("--client-id", default="dev-agent", help="client_id claim")
    token.add_argument(
        "--subject",
        help="sub claim: the user the token stands for; limits and idempotency records are "
        "per user (default: the client itself)",
    )
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--host", help="the server's host, as given to serve (default 127.0.0.1)")
    token.add_argument("--port", type=int, help="the server's port, as given to serve")
    token.add_argument("--url", help="the server's public URL, when it is behind a proxy")
    token.set_defaults(handler=_token)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
