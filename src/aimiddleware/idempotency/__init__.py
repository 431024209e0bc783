"""Idempotency-Key support: run a request once, replay its response (streams too) to retries.

>>> from aimiddleware.idempotency import IdempotencyMiddleware
"""

from __future__ import annotations

from ._replay import FollowedStreamAbandoned
from .middleware import IdempotencyMiddleware

__all__ = ["FollowedStreamAbandoned", "IdempotencyMiddleware"]
