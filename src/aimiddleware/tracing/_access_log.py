"""The optional structured access log: one JSON line per request, written when it ends."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from .._openai import LLMResponse
from ..context import get_annotations, get_principal, request_id, trace_id

if TYPE_CHECKING:
    from ._exchange import Exchange

ACCESS_LOGGER = "aimiddleware.access"
_PREFIX = "aimiddleware."


class AccessLog:
    """Writes one JSON object per request to ``logger`` at ``level``.

    Keys: ``request_id``, ``trace_id``, ``span_id``, ``principal_id``, ``method``, ``route``,
    ``path``, ``status``, ``duration_ms``, ``error_type`` and, on LLM routes, ``operation``,
    ``model``, ``stream``, ``input_tokens``, ``output_tokens`` (also when the rate limiter
    removed a stream's usage chunk; ``null`` on an idempotent replay, which then has
    ``usage_replayed`` true), ``ttft_ms``; ``decisions`` holds
    the other middlewares' annotations (``idempotency.outcome``, ``ratelimit.*``...).
    Absent facts are ``null``; message content and credentials are never written.

    Pass one to choose the level::

        TracingMiddleware(app, access_log=AccessLog(logging.getLogger("api.access"), logging.DEBUG))
    """

    __slots__ = ("level", "logger")

    def __init__(self, logger: logging.Logger, level: int = logging.INFO) -> None:
        self.logger = logger
        self.level = level

    def __repr__(self) -> str:
        return f"AccessLog({self.logger.name!r})"

    def write(
        self,
        exchange: Exchange,
        error_type: str | None,
        route: str | None,
        response: LLMResponse | None,
        ttft: float | None,
        duration: float,
    ) -> None:
        if not self.logger.isEnabledFor(self.level):
            return
        scope = exchange.scope
        principal = get_principal(scope)
        context = exchange.span.get_span_context()
        record: dict[str, Any] = {
            "request_id": request_id(scope),
            "trace_id": trace_id(scope),
            "span_id": format(context.span_id, "016x") if context.is_valid else None,
            "principal_id": principal.id if principal is not None else None,
            "method": exchange.method,
            "route": route,
            "path": scope.get("path"),
            "status": exchange.status or None,
            "duration_ms": round(duration * 1000, 3),
            "error_type": error_type,
        }
        if exchange.operation is not None:
            llm = exchange.llm
            record["operation"] = exchange.operation
            record["model"] = llm.model if llm is not None else None
            record["stream"] = llm.stream if llm is not None else None
            usage = exchange.usage
            record["input_tokens"] = usage.input_tokens
            record["output_tokens"] = usage.output_tokens
            record["usage_replayed"] = usage.replayed
            record["ttft_ms"] = round(ttft * 1000, 3) if ttft is not None else None
        record["decisions"] = {
            name.removeprefix(_PREFIX): value for name, value in get_annotations(scope).items()
        }
        self.logger.log(self.level, json.dumps(record, separators=(",", ":"), ensure_ascii=False))
