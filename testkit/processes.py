"""HTTP servers in subprocesses (``--workers N`` included), on a socket bound by the test.

The socket is bound here, before the process starts, and handed down as a file descriptor
(``--fd N``, which ``python -m reference_app serve`` and ``python -m testkit.serve`` take): the
port is the test's from the first instant, and whatever accepts on it is that process or one
of its workers. A process that exits before it is ready fails the fixture with its log tail.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from .servers import LOOPBACK, ROOT, bound_socket, log_tail, port_of


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


class ServerProcess:
    """A running server subprocess: its process, port, URL and log."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` is this server's process or one of its workers."""
        return pid == self.process.pid or parent_of(pid) == self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the server on {self.url} exited ({self.process.returncode}):\n"
                + log_tail(self.log)
            )

    def wait(self, ready: Callable[[ServerProcess], bool], timeout: float) -> None:
        """Until ``ready(self)`` is true; fails with the log tail if the process exits first
        or the time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            with contextlib.suppress(OSError, httpx.TransportError):
                if ready(self):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server on {self.url} was not ready in {timeout} s:\n" + log_tail(self.log)
                )
            time.sleep(0.05)


def listening(server: ServerProcess) -> bool:
    """A connection is accepted: the socket is the test's, so it is this server listening."""
    socket.create_connection((LOOPBACK, server.port), 1).close()
    return True


@contextlib.contextmanager
def serving_process(
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    ready: Callable[[ServerProcess], bool] = listening,
    timeout: float = 60.0,
    stop_timeout: float = 30.0,
    sock: socket.socket | None = None,
) -> Iterator[ServerProcess]:
    """Run ``command --fd N`` on ``sock`` (by default one bound here, whose port the caller need
    not know in advance); yields the server once ``ready``."""
    listener = sock if sock is not None else bound_socket()
    with tempfile.TemporaryDirectory(prefix="aimw-server-") as workdir, listener:
        log = Path(workdir) / "server.log"
        fd = listener.fileno()
        with log.open("ab") as out:
            process = subprocess.Popen(
                [*command, "--fd", str(fd)],
                cwd=ROOT,
                env={**(env if env is not None else os.environ), "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
            )
        server = ServerProcess(process, port_of(listener), log)
        listener.close()  # the server holds it now: the port goes when the server does
        try:
            server.wait(ready, timeout)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
