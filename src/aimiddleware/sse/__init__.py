"""SSE-safe streaming: stream headers, comment heartbeats, disconnect propagation.

>>> from aimiddleware.sse import SSEMiddleware
>>> app = SSEMiddleware(app, heartbeat=15.0)  # doctest: +SKIP
"""

from __future__ import annotations

from ._options import LastEventIdHook, SSEOptions
from .middleware import SSEMiddleware

__all__ = ["LastEventIdHook", "SSEMiddleware", "SSEOptions"]
