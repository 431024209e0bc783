"""What bounds a configuration that misses its budget (:mod:`benchmarks.budgets`), in words.

The report prints the line of a figure under its table whenever the run finds the budget missed;
one without a line here is listed as not yet explained, with the command that shows where its
time goes. Keys: a configuration's name for its budget per request (``tracing:always-on``),
``stream-cost:NAME`` for a budget per chunk, ``roundtrips:NAME`` for Redis round trips. Fill a
line from the profile, e.g.::

    python -m benchmarks.inprocess --profile idempotency:memory-fresh --requests 2000

and say what the remaining cost is and why it cannot go (a hash the protocol requires, the
OpenTelemetry SDK's own work...), not what the code does. Remove a line once the budget is met.
"""

from __future__ import annotations

from typing import Final

BOUNDS: Final[dict[str, str]] = {}
