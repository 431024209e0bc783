"""The test servers bind their own ports: none starts on a port another process took, none is
mistaken for another process listening there, and one that cannot start says why."""

from __future__ import annotations

import random
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from testkit import servers
from testkit.processes import serving_process
from testkit.servers import LOOPBACK, RedisServer, ThreadedServer, redis_process_id

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


def named(name: str) -> Starlette:
    async def who(request: Request) -> JSONResponse:
        return JSONResponse({"name": name})

    return Starlette(routes=[Route("/", who)])


class Churn:
    """Another thread that keeps taking loopback ports and letting them go: ephemeral ones, as
    every connection and bind(0) does, and ones where the Redis servers are started."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.taken = 0
        self.thread = threading.Thread(target=self._run, name="port-churn", daemon=True)

    def _run(self) -> None:
        held: list[socket.socket] = []
        try:
            while not self.stop.is_set():
                sock = socket.socket()
                try:
                    sock.bind((LOOPBACK, random.choice([0, servers._candidate_port()])))
                    sock.listen()
                except OSError:
                    sock.close()
                    continue
                held.append(sock)
                self.taken += 1
                if len(held) > 200:
                    held.pop(0).close()
        finally:
            for sock in held:
                sock.close()

    def __enter__(self) -> Churn:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def churn() -> Iterator[Churn]:
    with Churn() as running:
        yield running


def test_many_servers_start_together_while_ports_churn(churn: Churn, tmp_path: Path) -> None:
    def threaded(index: int) -> str:
        with ThreadedServer(named(f"app-{index}")) as server:
            return str(httpx.get(server.url, timeout=10).json()["name"])

    def redis(index: int) -> int:
        workdir = tmp_path / f"redis-{index}"
        workdir.mkdir()
        server = RedisServer(workdir, cluster=index % 2 == 0)
        try:
            server.start()
            assert redis_process_id(server.port) == server.process.pid  # type: ignore[union-attr]
            return server.port
        finally:
            server.close()

    def subprocess_workers(index: int) -> int:
        command = [
            sys.executable,
            "-m",
            "testkit.serve",
            "tests.test_servers:app",
            "--workers",
            "2",
        ]
        with serving_process(command) as server:
            assert httpx.get(server.url, timeout=30).json() == {"name": "subprocess"}
            return server.port

    jobs: list[Any] = [(threaded, i) for i in range(24)]
    jobs += [(redis, i) for i in range(8)]
    jobs += [(subprocess_workers, i) for i in range(2)]
    random.shuffle(jobs)
    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = {(job.__name__, i): pool.submit(job, i) for job, i in jobs}
        results = {key: future.result(timeout=300) for key, future in futures.items()}
    assert [results[("threaded", i)] for i in range(24)] == [f"app-{i}" for i in range(24)]
    assert churn.taken > 0


app = named("subprocess")


def test_redis_moves_on_when_its_port_is_taken(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first port tried is the session's Redis: that one answers there, with its own
    process id; ours fails to bind and is started again elsewhere."""
    tried: list[int] = []
    free = servers._candidate_port

    def candidate() -> int:
        port = redis_server.port if not tried else free()
        tried.append(port)
        return port

    monkeypatch.setattr(servers, "_candidate_port", candidate)
    server = RedisServer(tmp_path)
    try:
        server.start()
        assert server.process is not None
        assert tried[0] == redis_server.port
        assert server.port not in (0, redis_server.port)
        assert redis_process_id(server.port) == server.process.pid
        assert redis_process_id(redis_server.port) != server.process.pid
    finally:
        server.close()


def test_a_cluster_node_moves_on_when_its_bus_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[int] = []
    free = servers._candidate_port
    with socket.socket() as bus:
        bus.bind((LOOPBACK, 0))
        bus.listen()
        first = bus.getsockname()[1] - 10000  # its cluster bus port is the one taken here

        def candidate() -> int:
            tried.append(first if not tried else free())
            return tried[-1]

        monkeypatch.setattr(servers, "_candidate_port", candidate)
        server = RedisServer(tmp_path, cluster=True)
        try:
            server.start()
            assert server.process is not None
            assert tried[0] == first
            assert server.port not in (0, first)
            assert redis_process_id(server.port) == server.process.pid
        finally:
            server.close()


def test_a_stopped_redis_keeps_its_port_and_is_refused(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        port = server.port
        server.stop()
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind((LOOPBACK, port))
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((LOOPBACK, port), 2).close()
        server.start()
        assert server.port == port
        assert redis_process_id(port) == server.process.pid  # type: ignore[union-attr]
    finally:
        server.close()


def test_a_redis_that_cannot_start_fails_with_its_log(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path, port=redis_server.port)  # taken, and kept
    with pytest.raises(RuntimeError, match="did not start") as caught:
        server.start()
    assert "already in use" in str(caught.value)
    assert server.process is None
    assert redis_process_id(redis_server.port) == redis_server.process.pid  # type: ignore[union-attr]


def test_a_server_that_does_not_start_fails_with_what_it_said() -> None:
    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no model here"})

    with pytest.raises(RuntimeError, match="did not start") as caught:
        ThreadedServer(refuse).start()
    assert "no model here" in str(caught.value)


def test_a_subprocess_that_exits_fails_with_its_log_tail() -> None:
    command = [sys.executable, "-m", "testkit.serve", "tests.no_such_module:app"]
    with pytest.raises(RuntimeError, match="exited") as caught, serving_process(command):
        pass
    assert "no_such_module" in str(caught.value)


def test_the_dead_port_refuses_and_cannot_be_taken(dead_port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, dead_port), 2).close()
    with socket.socket() as other, pytest.raises(OSError, match="in use"):
        other.bind((LOOPBACK, dead_port))
