"""A stand-in for a proxy that echoes ``traceparent`` on responses."""

from __future__ import annotations

import threading
import uuid
from typing import Any


class HeaderStandIn:
    """MOCK of a tracing proxy in front of the app (none runs here): it answers each chat with
    a ``traceparent`` of a fresh trace, so that the page's reading of that header is tested
    against values it cannot have guessed."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent: list[dict[str, str]] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        with self.lock:
            headers = {"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
            self.sent.append(headers)

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in headers.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
