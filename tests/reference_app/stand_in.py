"""A stand-in for response headers of middlewares this app does not mount yet."""

from __future__ import annotations

import threading
import uuid
from typing import Any


class HeaderStandIn:
    """MOCK of the response headers of the rate-limit middleware, which this app does not mount
    yet, and of a ``traceparent`` echoed by a proxy: a fresh trace per request and both
    rate-limit header families, so that the page's display of them is tested against values
    it cannot have guessed."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent: list[dict[str, str]] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        with self.lock:
            remaining = 10 - len(self.sent) - 1
            headers = {
                "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
                "ratelimit-policy": '"requests";q=10;w=60, "tokens";q=20000;w=60;qu="tokens"',
                "ratelimit": f'"requests";r={remaining};t=60, "tokens";r=19000;t=60',
                "x-ratelimit-limit-requests": "10",
                "x-ratelimit-remaining-requests": str(remaining),
                "x-ratelimit-reset-requests": "6s",
            }
            self.sent.append(headers)

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in headers.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
