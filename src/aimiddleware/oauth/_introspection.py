"""RFC 7662 token introspection for opaque tokens, with client authentication."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

from .._config import check_int, check_seconds
from ..exceptions import ConfigurationError
from ._http import fetch_json

if TYPE_CHECKING:
    import httpx

__all__ = ["Introspection", "IntrospectionBusy", "IntrospectionUnavailable"]

logger = logging.getLogger("aimiddleware.oauth")

_MAX_RESPONSE: Final = 1 << 16


class IntrospectionUnavailable(Exception):  # noqa: N818 (a state, not a bug)
    """The introspection endpoint could not give an answer (network, status, format)."""


class IntrospectionBusy(IntrospectionUnavailable):
    """Every introspection slot stayed taken for ``max_wait`` seconds: the call was not made."""


class Introspection:
    """How to ask the authorization server about an opaque token (RFC 7662).

    The resource server authenticates as an OAuth client: ``client_secret_basic`` (HTTP Basic,
    the RFC 6749 default) or ``client_secret_post``. ``endpoint=None`` takes the
    ``introspection_endpoint`` from the issuer's metadata. Answers are cached by token hash for
    at most ``cache_ttl`` seconds and never past the token's ``exp``.

    Every unknown opaque token costs one call to the authorization server, so at most
    ``max_concurrent`` calls are in flight at once; a request that finds them all taken waits
    up to ``max_wait`` seconds for one, then gets the "unavailable" answer (503 by default).
    ``timeout`` bounds each call as a whole, body included.

    >>> "s3cret" in repr(Introspection(client_id="api", client_secret="s3cret"))
    False
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        endpoint: str | None = None,
        auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic",
        cache_ttl: float = 60.0,
        timeout: float = 5.0,
        max_concurrent: int = 16,
        max_wait: float = 1.0,
    ) -> None:
        if not client_id or not client_secret:
            raise ConfigurationError("introspection needs client_id and client_secret")
        if auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ConfigurationError(f"unsupported introspection auth_method {auth_method!r}")
        if endpoint is not None and not endpoint.startswith(("https://", "http://")):
            raise ConfigurationError("the introspection endpoint must be an http(s) URL")
        check_seconds("cache_ttl", cache_ttl, zero=True)
        check_seconds("timeout", timeout)
        check_int("max_concurrent", max_concurrent, minimum=1)
        check_seconds("max_wait", max_wait, zero=True, maximum=60)
        self.endpoint = endpoint
        self.client_id = client_id
        self._client_secret = client_secret
        self.auth_method = auth_method
        self.cache_ttl = cache_ttl
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self.max_wait = max_wait
        # shared by every request on purpose: it bounds the calls this process makes
        self._slots = asyncio.Semaphore(max_concurrent)

    def __repr__(self) -> str:
        return (
            f"Introspection(endpoint={self.endpoint!r}, client_id={self.client_id!r}, "
            f"client_secret='***', auth_method={self.auth_method!r}, "
            f"max_concurrent={self.max_concurrent})"
        )

    async def introspect(
        self, client: httpx.AsyncClient, endpoint: str, token: str
    ) -> dict[str, Any]:
        """The endpoint's JSON answer (``active`` may be false).

        :raises IntrospectionBusy: no call slot became free within ``max_wait``.
        :raises IntrospectionUnavailable: transport error, deadline, non-200 status or
            malformed answer.
        """
        try:
            async with asyncio.timeout(self.max_wait):
                await self._slots.acquire()
        except TimeoutError:
            raise IntrospectionBusy(
                f"{self.max_concurrent} introspection calls already in flight"
            ) from None
        try:
            return await self._call(client, endpoint, token)
        finally:
            self._slots.release()

    async def _call(self, client: httpx.AsyncClient, endpoint: str, token: str) -> dict[str, Any]:
        form = {"token": token, "token_type_hint": "access_token"}
        headers: dict[str, str] = {}
        if self.auth_method == "client_secret_basic":
            # RFC 6749 section 2.3.1: form-urlencode both parts before Basic encoding
            pair = f"{quote(self.client_id, safe='')}:{quote(self._client_secret, safe='')}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self.client_id
            form["client_secret"] = self._client_secret
        answer = await fetch_json(
            client,
            endpoint,
            limit=_MAX_RESPONSE,
            deadline=self.timeout,
            error=IntrospectionUnavailable,
            method="POST",
            headers=headers,
            data=form,
        )
        if not isinstance(answer.get("active"), bool):
            raise IntrospectionUnavailable(f"no boolean 'active' in the answer from {endpoint}")
        return answer
