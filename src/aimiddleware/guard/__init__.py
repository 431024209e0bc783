"""Request guards: body size, body read time and header size limits, answered in the envelope.

>>> from aimiddleware.guard import RequestGuardMiddleware
>>> app = RequestGuardMiddleware(app, max_request_bytes=1_048_576)  # doctest: +SKIP
"""

from __future__ import annotations

from ._options import GuardOptions
from .middleware import RequestGuardMiddleware

__all__ = ["GuardOptions", "RequestGuardMiddleware"]
