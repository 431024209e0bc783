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

BOUNDS: Final[dict[str, str]] = {
    "idempotency:memory-fresh": (
        "the canonical fingerprint (the guarantee that key order and whitespace do not change "
        "it) parses and re-encodes every fresh body, about 40k instructions, and three SHA-256 "
        "digests whose algorithms stored records depend on; the rest is about 2,000 bytecodes of "
        "claim, record and replay-able response bookkeeping (the memory store's LRU, the send "
        "wrapper, four per-request objects)"
    ),
    "ratelimit:memory": (
        "the token limit needs the request read: the shared JSON parse and the LLM request "
        "(prompt size, model, caps) are about 40k instructions together; reading the answer's "
        "usage about 16k; the three limits' arithmetic and slot about 35k; writing the RateLimit "
        "and x-ratelimit-* headers about 18k (integer to text is most of it)"
    ),
    "oauth:api-key": (
        "one SHA-256 of the presented key per request (keys are kept as digests, never in "
        "memory as they are), the Authorization lookup, and setting the principal, challenger "
        "and route in the context"
    ),
    "oauth:jwt-rs256": (
        "the validated-token cache is keyed by the token's SHA-256 (a token is never kept as "
        "it is), then the claims' expiry and audience are checked again on every request; "
        "besides that, as for an API key"
    ),
    "tracing:always-on": (
        "beyond the SDK's floor: decoding the request and response bodies for the GenAI "
        "attributes (about 50k instructions of JSON parsing), the request id, and building the "
        "span's start and end attributes (about 60 Python calls); the SDK's own "
        "attribute cleaning per span is counted in the floor"
    ),
    "stack:memory-no-sdk": (
        "the sum of its parts: idempotency's fingerprint and record, the rate limiter's token "
        "estimate and headers, OAuth's digest; the body is parsed once and shared"
    ),
    "stream-cost:stack": (
        "each of rate limits and tracing reads the usage from the stream's events, and "
        "idempotency records every chunk; token deltas are skipped by tracing without a parse, "
        "the rate limiter still parses each event"
    ),
}
