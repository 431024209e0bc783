"""What a result was measured on: the machine and the versions of everything in the path."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

# the packages whose versions decide the figures
PACKAGES = (
    "aimiddleware",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "redis",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-asgi",
    "slowapi",
    "limits",
    "asgi-idempotency-header",
    "fastapi-idempotency",
    "llama-cpp-python",
    "openai",
    "matplotlib",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _tool_version(*command: str) -> str | None:
    if not shutil.which(command[0]):
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else None


def describe() -> dict[str, object]:
    """The machine, the interpreter and the package versions, as a JSON-ready dict.

    >>> sorted(describe())[:3]
    ['cpu', 'cpus', 'memory_gib']
    """
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "wrk": _tool_version("wrk", "--version"),
        # other work on the machine moves absolute figures; ratios within a round much less
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
    }
