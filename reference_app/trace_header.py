"""``x-trace-id`` on every response that has a trace, so people can quote it and find the span.

The tracing middleware records the trace id in the scope (``aimiddleware.context.trace_id``); this
wrapper, mounted just inside it, copies the id onto the response. The playground shows it next
to the request id. W3C's ``traceresponse`` header is still a draft of Trace Context Level 2,
so the plain, widely used ``x-trace-id`` name is what the page reads first.
"""

from __future__ import annotations

from aimiddleware.context import ASGIApp, Message, Receive, Scope, Send, trace_id

HEADER = b"x-trace-id"


class TraceIdHeader:
    """Adds ``x-trace-id: <32 hex digits>`` when the request has a trace and no such header.

    Mount it directly inside the tracing middleware::

        app = TracingMiddleware(TraceIdHeader(app), tracer_provider=provider)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __repr__(self) -> str:
        return "TraceIdHeader()"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                # read at the start of the response: the tracing middleware set it before us
                trace = trace_id(scope)
                headers = list(message.get("headers", ()))
                if trace and all(name.lower() != HEADER for name, _ in headers):
                    headers.append((HEADER, trace.encode("ascii")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_trace)
