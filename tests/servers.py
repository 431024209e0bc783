"""The real servers the tests start (redis-server, a Redis Cluster, uvicorn in a thread).

They live in :mod:`testkit.servers`, shared with the benchmarks; this module keeps the names
the tests import.
"""

from __future__ import annotations

from testkit.servers import (
    LOOPBACK,
    ROOT,
    RedisCluster,
    RedisServer,
    ThreadedServer,
    bound_socket,
    dead_port,
    log_tail,
    port_of,
    redis_binary,
    redis_process_id,
    running_cluster,
    running_redis,
)

__all__ = [
    "LOOPBACK",
    "ROOT",
    "RedisCluster",
    "RedisServer",
    "ThreadedServer",
    "bound_socket",
    "dead_port",
    "log_tail",
    "port_of",
    "redis_binary",
    "redis_process_id",
    "running_cluster",
    "running_redis",
]
