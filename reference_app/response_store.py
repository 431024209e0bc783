"""Stored responses (``store: true``): kept per caller in the app's store, for a while.

A record is the response object and the conversation it ends (the input items of every turn
and their outputs, without the instructions, which OpenAI does not carry over either), so that
``previous_response_id`` continues it. The key names the caller by a hash of its id, so one
caller's lookup of another's response finds nothing: the answer is the 404 of an id that does
not exist. The store is the library's (``aimiddleware.stores``): bounded memory by default,
Redis when the app has a Redis URL (its keys expire with the TTL there as here).

A store fault is answered 503 ``response_store_unavailable`` (fail-closed: a response asked
to be kept is not answered as if it had been), with one log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from aimiddleware.context import get_principal
from aimiddleware.exceptions import StoreUnavailable
from aimiddleware.stores import Store, parse_store_url, store_from_url

from .errors import APIError
from .stack import credential_tenant

logger = logging.getLogger("reference_app.responses")


def owner_of(scope: Any) -> str:
    """Who a response belongs to: the authenticated principal, else the hash of the credential
    (with auth off the SDK still sends its API key), else every anonymous caller together."""
    principal = get_principal(scope)
    if principal is not None:
        return principal.id
    return credential_tenant(scope) or "anonymous"


def unavailable(exc: StoreUnavailable) -> APIError:
    logger.warning("responses: the store is unavailable, answering 503: %s", exc)
    return APIError(
        503,
        "The response store is unavailable; retry shortly.",
        type="server_error",
        code="response_store_unavailable",
        headers={"Retry-After": "1"},
    )


class ResponseStore:
    """The stored responses of every caller; ``ttl`` seconds each.

    >>> store = ResponseStore("memory://", ttl=3600, max_bytes=16 * 1024 * 1024)
    """

    def __init__(self, url: str, *, ttl: float, max_bytes: int) -> None:
        bounds = {"max_bytes": max_bytes} if parse_store_url(url).backend == "memory" else {}
        self._store: Store = store_from_url(url, **bounds)
        self.ttl = ttl

    @staticmethod
    def _key(owner: str, response_id: str) -> str:
        digest = hashlib.sha256(owner.encode()).hexdigest()[:32]
        return f"responses:{digest}:{response_id}"

    async def save(
        self, owner: str, response: dict[str, Any], conversation: list[dict[str, Any]]
    ) -> None:
        record = json.dumps({"response": response, "conversation": conversation})
        try:
            await self._store.set(self._key(owner, response["id"]), record.encode(), self.ttl)
        except StoreUnavailable as exc:
            raise unavailable(exc) from None

    async def load(self, owner: str, response_id: str) -> dict[str, Any] | None:
        """The record of ``response_id`` if ``owner`` stored it (and it has not expired)."""
        try:
            raw = await self._store.get(self._key(owner, response_id))
        except StoreUnavailable as exc:
            raise unavailable(exc) from None
        return None if raw is None else dict(json.loads(raw))

    async def delete(self, owner: str, response_id: str) -> bool:
        """Forget ``response_id``; ``False`` when ``owner`` has no such response."""
        key = self._key(owner, response_id)
        try:
            raw = await self._store.get(key)
            # compare-and-delete: a record written again meanwhile is not removed unseen
            return raw is not None and await self._store.release(key, raw)
        except StoreUnavailable as exc:
            raise unavailable(exc) from None

    async def aclose(self) -> None:
        await self._store.aclose()
