"""The middleware's own error responses: problem details (RFC 9457) as the draft shows them.

They are rendered by :mod:`aimiddleware.errors`, always as problems (the draft's format), with
the draft's titles and details and a type URI of ``problem_type_base#slug``.
"""

from __future__ import annotations

from typing import Final

from ..context import Scope, Send, annotate
from ..errors import ErrorInfo, send_error

__all__ = ["PROBLEMS", "send_problem"]

NO_STORE: Final = (b"cache-control", b"no-store")

# slug -> (status, title, detail)
PROBLEMS: Final[dict[str, tuple[int, str, str]]] = {
    "idempotency-key-missing": (
        400,
        "Idempotency-Key is missing",
        "This operation is idempotent and it requires correct usage of Idempotency Key.",
    ),
    "idempotency-key-invalid": (
        400,
        "Idempotency-Key is invalid",
        "The Idempotency-Key must be one string of at most 255 visible ASCII characters.",
    ),
    "idempotency-key-reused": (
        422,
        "Idempotency-Key is already used",
        "This operation is idempotent and it requires correct usage of Idempotency Key. "
        "Idempotency Key MUST not be reused across different payloads of this operation.",
    ),
    "idempotency-key-in-flight": (
        409,
        "A request is outstanding for this Idempotency-Key",
        "A request with the same Idempotency-Key for the same operation is being processed "
        "or is outstanding.",
    ),
    "request-body-too-large": (
        413,
        "Request body too large",
        "The request body is larger than this operation accepts.",
    ),
    "idempotency-store-unavailable": (
        503,
        "Idempotency store unavailable",
        "The request was not run because its Idempotency-Key could not be checked. "
        "Retry later with the same key.",
    ),
}


async def send_problem(
    scope: Scope,
    send: Send,
    slug: str,
    type_base: str,
    *,
    detail: str | None = None,
    retry_after: float | None = None,
) -> None:
    """Send one problem-details response and record the outcome on the request."""
    status, title, default_detail = PROBLEMS[slug]
    # the slug is the code too: an OpenAI route's envelope says which problem it was
    info = ErrorInfo(
        status,
        detail or default_detail,
        code=slug,
        problem_type=f"{type_base}#{slug}",
        title=title,
    )
    if retry_after is not None:  # Retry-After, retry-after-ms, x-should-retry: true
        info.retry_after, info.should_retry = retry_after, True
    annotate(scope, "aimiddleware.idempotency.error", slug)
    await send_error(send, scope, info, [NO_STORE], format="problem")
