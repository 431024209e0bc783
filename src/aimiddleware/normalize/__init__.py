"""One error shape everywhere: the OpenAI envelope (or RFC 9457), also after a stream started.

>>> from aimiddleware.normalize import NormalizeMiddleware, NormalizeRoute
>>> mcp = NormalizeRoute("/mcp*", format="passthrough")
>>> app = NormalizeMiddleware(app, routes=[mcp])  # doctest: +SKIP
"""

from __future__ import annotations

from ..errors import STATUS_DEFAULTS
from ._options import NormalizeOptions
from ._routes import NormalizeRoute
from .middleware import NormalizeMiddleware

__all__ = ["STATUS_DEFAULTS", "NormalizeMiddleware", "NormalizeOptions", "NormalizeRoute"]
