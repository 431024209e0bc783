"""A real authorization server for the tests: keys generated at start, served over HTTP.

It serves RFC 8414 metadata, a JWKS and an RFC 7662 introspection endpoint on a loopback
port (uvicorn in a thread, on a socket the issuer binds when its URL is first needed), mints
RS256 / ES256 access tokens, and counts what it was asked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote

from joserfc import jwk, jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.servers import LOOPBACK, ThreadedServer, bound_socket, port_of

INTROSPECTION_CLIENT = ("resource-server", "rs-secret/with:odd chars")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """Keys, minting and the HTTP behaviour switches (down, counters) of one issuer."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._port = 0
        self.rsa = jwk.RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})
        self.ec = jwk.ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig"})
        self.extra_keys: list[jwk.Key] = []
        self.reset()

    @property
    def port(self) -> int:
        if not self._port:
            self._socket = bound_socket()
            self._port = port_of(self._socket)
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def listener(self) -> socket.socket:
        """The socket to serve on: the one bound for its URL, or that port bound again."""
        port = self.port
        sock, self._socket = self._socket, None
        return sock if sock is not None else bound_socket(port, reuse=True)

    def close(self) -> None:
        """Release the port held for the URL when the issuer was never served."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def reset(self) -> None:
        self.jwks_down = False
        self.metadata_down = False
        self.introspection_down = False
        self.jwks_fetches = 0
        self.metadata_fetches = 0
        self.introspections = 0
        self.introspection_delay = 0.0
        self.introspections_in_flight = 0
        self.most_introspections_in_flight = 0
        self.introspection_started = threading.Event()
        # when set, each introspection answer waits until the test sets this event
        self.introspection_gate: threading.Event | None = None
        self.opaque: dict[str, dict[str, Any]] = {}
        self.extra_keys = []
        self.seen_introspection_auth: list[str] = []

    # -- tokens ------------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": "https://api.test",
            "sub": "user-1",
            "client_id": "agent-7",
            "scope": "chat models:read",
            "iat": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(
        self, *, key: jwk.Key | None = None, header: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        key = key or self.rsa
        alg = "ES256" if isinstance(key, jwk.ECKey) else "RS256"
        head: dict[str, Any] = {"alg": alg, "typ": "at+jwt", "kid": key.kid}
        head.update(header or {})
        head = {k: v for k, v in head.items() if v is not None}
        return jwt.encode(head, self.claims(**claims), key, algorithms=[head["alg"]])

    def jwks(self) -> dict[str, Any]:
        keys = [self.rsa, self.ec, *self.extra_keys]
        return {"keys": [k.as_dict(private=False) for k in keys]}

    # -- HTTP --------------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def metadata(request: Request) -> Response:
            self.metadata_fetches += 1
            if self.metadata_down:
                return Response(status_code=503)
            return JSONResponse(
                {
                    "issuer": self.url,
                    "jwks_uri": f"{self.url}/jwks",
                    "introspection_endpoint": f"{self.url}/introspect",
                    "token_endpoint": f"{self.url}/token",
                }
            )

        async def oidc(request: Request) -> Response:
            # an OpenID Provider under a path, found only by the OIDC Discovery fallback
            self.metadata_fetches += 1
            return JSONResponse({"issuer": f"{self.url}/oidc", "jwks_uri": f"{self.url}/jwks"})

        async def keys(request: Request) -> Response:
            self.jwks_fetches += 1
            if self.jwks_down:
                return Response(status_code=503)
            return JSONResponse(self.jwks())

        async def introspect(request: Request) -> Response:
            self.introspections += 1
            self.introspections_in_flight += 1
            self.introspection_started.set()
            self.most_introspections_in_flight = max(
                self.most_introspections_in_flight, self.introspections_in_flight
            )
            try:
                await asyncio.sleep(self.introspection_delay)
                if self.introspection_gate is not None:
                    await asyncio.to_thread(self.introspection_gate.wait, 60)
                return await answer(request)
            finally:
                self.introspections_in_flight -= 1

        async def answer(request: Request) -> Response:
            if self.introspection_down:
                return Response(status_code=500)
            auth = request.headers.get("authorization", "")
            self.seen_introspection_auth.append(auth)
            form = dict(parse_qsl((await request.body()).decode()))
            client_id, secret = INTROSPECTION_CLIENT
            basic = auth.removeprefix("Basic ")

            expected = base64.b64encode(
                f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
            ).decode()
            posted = form.get("client_id") == client_id and form.get("client_secret") == secret
            if basic != expected and not posted:
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            answer = self.opaque.get(str(form.get("token")))
            return JSONResponse(answer if answer is not None else {"active": False})

        return Starlette(
            routes=[
                Route("/.well-known/oauth-authorization-server", metadata),
                Route("/oidc/.well-known/openid-configuration", oidc),
                Route("/jwks", keys),
                Route("/introspect", introspect, methods=["POST"]),
            ]
        )


@contextlib.contextmanager
def serving(issuer: Issuer) -> Iterator[Issuer]:
    with ThreadedServer(issuer.app(), sock=issuer.listener()):
        yield issuer


def parse_challenges(values: list[str]) -> dict[str, dict[str, str]]:
    """``WWW-Authenticate`` values -> {scheme: {param: value}} (RFC 9110 section 11.6.1)."""
    out: dict[str, dict[str, str]] = {}
    for value in values:
        scheme, _, rest = value.partition(" ")
        params: dict[str, str] = {}
        i = 0
        while i < len(rest):
            while i < len(rest) and rest[i] in " ,":
                i += 1
            if i >= len(rest):
                break
            eq = rest.index("=", i)
            name = rest[i:eq].strip()
            assert name.isidentifier() or name.replace("_", "").isalnum(), name
            i = eq + 1
            assert rest[i] == '"', f"unquoted value for {name} in {value!r}"
            end = rest.index('"', i + 1)
            params[name] = rest[i + 1 : end]
            i = end + 1
        assert scheme not in out, f"scheme {scheme} challenged twice"
        out[scheme] = params
    return out


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(claims).encode())
    return f"{head}.{body}.{b64url(signature)}"
