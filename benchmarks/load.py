"""Load generators: wrk when installed, else a keep-alive asyncio client in its own process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from .apps import Config


@dataclass
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    # latency (ms) at each percentile in PERCENTILES, keyed by the percentile as text
    percentiles: dict[str, float] = field(default_factory=dict)


PERCENTILES = (1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9)

# appended to every wrk script: the latency distribution, in microseconds
_WRK_DONE = (
    "done = function(summary, latency, requests)\n"
    f"  for _, p in ipairs({{{', '.join(f'{p:g}' for p in PERCENTILES)}}}) do\n"
    '    io.write(string.format("AIMW-PCT %g %d\\n", p, latency:percentile(p)))\n'
    "  end\n"
    "end\n"
)


def _cpu_pin(cpu: int) -> list[str]:
    # server and load generator on different cores: steadier figures on a small machine
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def server_command(name: str) -> list[str]:
    """Serve configuration ``name``; ``testkit.processes`` adds the ``--fd`` of its socket."""
    return [*_cpu_pin(0), sys.executable, "-m", "benchmarks.serve", name]


def _wrk_script(cfg: Config) -> str:
    if cfg.lua:
        return cfg.lua + "\n" + _WRK_DONE
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(cfg.request_body.decode())}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in cfg.headers.items()]
    return "\n".join(lines) + "\n" + _WRK_DONE


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(cfg: Config, port: int, duration: float, connections: int) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_wrk_script(cfg))
    try:
        out = subprocess.run(
            [
                *_cpu_pin(1),
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--latency",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}{cfg.path}",
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    percentiles = {
        f"{float(p):g}": int(us) / 1000 for p, us in re.findall(r"AIMW-PCT (\S+) (\d+)", out)
    }
    return Result(rps, p50, p99, errors, percentiles)


# -- the fallback: an asyncio HTTP/1.1 keep-alive client in a separate process --------------


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> None:
    length = re.search(rb"(?i)content-length:\s*(\d+)", head)
    if length:
        await reader.readexactly(int(length.group(1)))
        return
    while True:  # chunked: a streamed response
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return


async def _client(port: int, request: bytes, deadline: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await _read_body(reader, head)
            latencies.append(time.perf_counter() - started)
            if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.1 3")):
                errors += 1
    finally:
        writer.close()
    return errors


async def _drive(port: int, request: bytes, duration: float, connections: int) -> Result:
    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    started = time.perf_counter()
    errors = await asyncio.gather(
        *(_client(port, request, deadline, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def at(p: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, round(len(ordered) * p / 100) - 1))] * 1000

    return Result(
        requests_per_s=len(ordered) / elapsed,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=at(99),
        errors=sum(errors),
        percentiles={f"{p:g}": at(p) for p in PERCENTILES},
    )


def run_python(cfg: Config, port: int, duration: float, connections: int) -> Result:
    headers = {
        "host": f"127.0.0.1:{port}",
        "content-type": "application/json",
        "content-length": str(len(cfg.request_body)),
        **cfg.headers,
    }
    head = f"POST {cfg.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = head.encode() + b"\r\n" + cfg.request_body
    code = (
        "import asyncio, json, sys; from benchmarks.load import _drive;"
        "a = sys.argv;"
        "r = asyncio.run(_drive(int(a[1]), sys.stdin.buffer.read(), float(a[2]), int(a[3])));"
        "print(json.dumps(r.__dict__))"
    )
    out = subprocess.run(
        [
            *_cpu_pin(1),
            sys.executable,
            "-c",
            code,
            str(port),
            str(duration),
            str(connections),
        ],
        input=request,
        capture_output=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    return Result(**json.loads(out))


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def unrunnable(cfg: Config) -> str | None:
    """Why this machine's load generator cannot drive ``cfg``, or None: the built-in client
    sends one fixed request, so configurations scripted in Lua (a fresh Idempotency-Key per
    request) need wrk."""
    if cfg.lua and generator() != "wrk":
        return "needs wrk, its requests are scripted in Lua (apt-get install wrk)"
    return None


def run_load(cfg: Config, port: int, duration: float, connections: int) -> Result:
    if generator() == "wrk":
        return run_wrk(cfg, port, duration, connections)
    if cfg.lua:
        raise RuntimeError(f"{cfg.name} needs wrk (its requests are scripted in Lua)")
    return run_python(cfg, port, duration, connections)
