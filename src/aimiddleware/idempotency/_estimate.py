"""How long a retry should wait for the request that holds its key: the 409's ``Retry-After``.

The running request's lease says when it started and, for a stream, how fast its chunks reach
the log (:mod:`._records`). The wait is the expected time it still runs:

* a stream whose pace is known (two chunks or more in the log at its last progress write) and
  whose length the request bounds (``max_tokens`` and the like, times ``n``): the chunks still
  to come at that pace, ``(max_tokens * n + FRAMING - written) / pace``, less the time since
  that write;
* otherwise (a body that is not a stream, a stream that has not shown its pace, no bound):
  as long as it has run so far. A request that has run ``t`` seconds is expected to run about
  ``t`` more (the median of a duration nothing else is known about); a client that waits for
  each 409's estimate then asks at ``t``, ``2t``, ``4t``... and waits at most as long again
  as the request took, with a number of 409s that grows with the log of its length.

Never below the ``retry_after`` option (the wait of a request that just started), never above
two thirds of ``lease_ttl``: a running request renews its lease every third of it, so its lease
always has that much left, and past it a request whose worker died has freed its key.
"""

from __future__ import annotations

from typing import Final

from .._openai import shared_llm_request
from ..context import Scope, json_body, route_path
from ._records import Record

__all__ = ["FRAMING", "expected_wait", "length_bound"]

# the events around a stream's tokens: the role, the finish reason, [DONE]
FRAMING: Final = 3


def length_bound(scope: Scope) -> int | None:
    """The most chunks the request's stream can have: one per token of its ``max_tokens``
    (``max_completion_tokens``, ``max_output_tokens``) for each of its ``n`` choices."""
    request = shared_llm_request(scope, route_path(scope), json_body(scope))
    if request is None or request.max_tokens is None:
        return None
    return request.max_tokens * request.choices + FRAMING


def expected_wait(
    record: Record, now: float, *, chunks: int | None, minimum: float, lease_ttl: float
) -> float:
    """Seconds until the request holding ``record`` is expected to end, at ``now`` (seconds
    since the epoch); ``chunks``: :func:`length_bound` of the request (the same request: the
    fingerprints agree), if known.

    >>> from aimiddleware.idempotency._records import LEASE
    >>> expected_wait(Record(LEASE, "t", "f", started=100.0), 104.0, chunks=None,
    ...               minimum=1, lease_ttl=30)
    4.0
    """
    if record.started is None:  # a lease written before leases had a clock
        return float(minimum)
    remaining = max(0.0, now - record.started)
    written, at, first = record.written or 0, record.written_at, record.first
    if chunks is not None and written >= 2 and at is not None and first is not None and at > first:
        pace = (written - 1) / (at - first)  # chunks per second since the first
        remaining = max(0, chunks - written) / pace - max(0.0, now - at)
    return max(float(minimum), min(remaining, lease_ttl * 2 / 3))
