"""The playground: a chat page at ``/`` and the demo-token seam at ``GET /demo/token``.

The page is plain HTML, CSS and JavaScript in ``reference_app/static/`` (no build step, nothing
fetched from outside the server). It streams chat completions with ``fetch`` and a
``ReadableStream``, shows the headers the middlewares add to the last response, and, when the
server runs in demo mode, sends a short-lived demo token as its bearer credential.

``python -m reference_app serve --demo`` (``AIMW_DEMO=1``, and ``make demo``) turns demo mode on
with the server's own development issuer; any other issuer can be handed to
:func:`reference_app.create_app`::

    from reference_app import DemoToken, Settings, create_app

    def issue() -> DemoToken:
        return DemoToken(access_token=mint_a_token(), expires_in=300, scope="chat")

    app = create_app(Settings(), demo_tokens=issue)

Without an issuer ``GET /demo/token`` answers 404 (``demo_mode_off``) and the page calls the API
without a token; an issuer that raises gets a 503 (``demo_token_unavailable``, which the
stack's normalisation answers as ``service_unavailable`` like every 5xx) and one log line.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.staticfiles import StaticFiles

from .errors import APIError
from .settings import Settings

logger = logging.getLogger("reference_app")

STATIC_DIR = Path(__file__).parent / "static"
ASSETS_PATH = "/playground"

#: Every path the page itself uses, exact (no patterns): for the public paths of an auth
#: middleware and the exempt paths of a rate limiter, so that loading the page costs nothing.
PAGE_PATHS: tuple[str, ...] = (
    "/",
    "/demo/token",
    *sorted(f"{ASSETS_PATH}/{p.name}" for p in STATIC_DIR.iterdir() if p.name != "index.html"),
)

# The page loads its script and stylesheet from this server and talks only to this server.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # the page is tiny; always revalidate so a new server version is picked up at once
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class DemoToken:
    """A short-lived access token the playground sends as ``Authorization: Bearer``.

    >>> DemoToken(access_token="eyJ...", expires_in=300, scope="chat models:read").expires_in
    300
    """

    access_token: str
    expires_in: int
    scope: str = ""

    def __repr__(self) -> str:
        return f"DemoToken(access_token='***', expires_in={self.expires_in}, scope={self.scope!r})"


#: Issues one demo token per call; may be a plain or an async function.
DemoTokenIssuer = Callable[[], DemoToken | Awaitable[DemoToken]]

# What the page needs (chat) and nothing more, for long enough to be worth caching but short
# enough that a leaked token soon stops working.
DEMO_SCOPE = "chat"
DEMO_TTL = 300
DEMO_CLIENT_ID = "playground"


def demo_issuer(settings: Settings) -> DemoTokenIssuer:
    """Demo mode on the server's own development issuer (``auth.mint``): each call signs a fresh
    ``at+jwt`` with the ``chat`` scope, valid five minutes. Example::

        issue = demo_issuer(Settings(demo=True))
        token = await issue()  # DemoToken(access_token='***', expires_in=300, scope='chat')
    """
    from .auth import mint

    async def issue() -> DemoToken:
        # mint reads the key file and signs with RSA: off the event loop
        token = await asyncio.to_thread(
            mint, settings, scope=DEMO_SCOPE, client_id=DEMO_CLIENT_ID, ttl=DEMO_TTL
        )
        return DemoToken(access_token=token, expires_in=DEMO_TTL, scope=DEMO_SCOPE)

    return issue


async def _issue(issuer: DemoTokenIssuer) -> DemoToken:
    token = issuer()
    if inspect.isawaitable(token):
        token = await token
    if not isinstance(token, DemoToken):
        raise TypeError(f"the demo token issuer returned {type(token).__name__}, not DemoToken")
    return token


def _router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    @router.get("/demo/token")
    async def demo_token(request: Request) -> JSONResponse:
        issuer: DemoTokenIssuer | None = request.app.state.demo_tokens
        if issuer is None:
            raise APIError(
                404,
                "No demo tokens here: demo mode is off, or auth is off and the API needs none.",
                code="demo_mode_off",
            )
        try:
            token = await _issue(issuer)
        except Exception as exc:
            # fail closed: no token rather than a bare 500; the page shows this error
            logger.error(
                "the demo token issuer failed (%s: %s); answering 503", type(exc).__name__, exc
            )
            raise APIError(
                503,
                "The demo token issuer is unavailable; retry shortly.",
                type="server_error",
                code="demo_token_unavailable",
                retry_after=1,
                should_retry=True,
            ) from None
        # RFC 6749 section 5.1: token responses are never cached
        return JSONResponse(
            {
                "access_token": token.access_token,
                "token_type": "Bearer",
                "expires_in": token.expires_in,
                "scope": token.scope,
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    return router


def install(app: FastAPI, demo_tokens: DemoTokenIssuer | None) -> None:
    """Serve the page at ``/``, its assets under ``/playground/`` and ``GET /demo/token``."""
    app.state.demo_tokens = demo_tokens
    app.include_router(_router())
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="playground")
