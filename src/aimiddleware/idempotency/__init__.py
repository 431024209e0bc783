"""Idempotency-Key support: run a request once, replay its response (streams too) to retries.

>>> from aimiddleware.idempotency import IdempotencyMiddleware, IdempotencyOptions
"""

from __future__ import annotations

from ._options import IdempotencyOptions
from ._replay import FollowedStreamAbandoned
from .middleware import IdempotencyMiddleware

__all__ = ["FollowedStreamAbandoned", "IdempotencyMiddleware", "IdempotencyOptions"]
