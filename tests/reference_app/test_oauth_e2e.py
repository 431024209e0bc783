"""OAuth end to end: the reference app with auth on, the real model, the openai SDK as client.

Tokens come from the development issuer's command line, exactly as a user mints them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from reference_app import Settings, create_app

from ..oauth.issuer import parse_challenges
from ..servers import ThreadedServer, bound_socket, port_of
from .conftest import MODEL, cli_token, wait_ready

pytestmark = [pytest.mark.model, pytest.mark.e2e]


class Demo:
    def __init__(self, server: ThreadedServer, key_file: Path) -> None:
        self.server = server
        self.url = server.url
        self.key_file = key_file

    def token(self, *args: str) -> str:
        """``python -m reference_app token ARGS`` against this server's key file and port."""
        return cli_token(self.server.port, self.key_file, *args)

    def sdk(self, api_key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    sock = bound_socket()
    key_file = tmp_path_factory.mktemp("issuer") / "issuer-key.json"
    settings = Settings(port=port_of(sock), auth=True, auth_key_file=key_file)
    with ThreadedServer(create_app(settings), sock=sock) as server:
        wait_ready(server.url)
        yield Demo(server, key_file)


def test_no_token_is_an_authentication_error(demo: Demo) -> None:
    with demo.sdk("unused") as client, pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=4,
            extra_headers={"Authorization": openai.omit},  # no credentials at all
        )
    assert "authorization" not in caught.value.response.request.headers
    response = caught.value.response
    assert response.status_code == 401
    assert caught.value.code == "invalid_api_key"
    challenge = parse_challenges(response.headers.get_list("www-authenticate"))["Bearer"]
    assert challenge["resource_metadata"] == f"{demo.url}/.well-known/oauth-protected-resource"
    assert challenge["scope"] == "chat"


def test_a_made_up_key_is_an_authentication_error(demo: Demo) -> None:
    client = demo.sdk("sk-not-a-real-key")
    with client, pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()
    challenge = parse_challenges(caught.value.response.headers.get_list("www-authenticate"))
    assert challenge["Bearer"]["error"] == "invalid_token"


def test_wrong_scope_is_permission_denied(demo: Demo) -> None:
    token = demo.token("--scope", "models:read")
    with demo.sdk(token) as client:
        assert [m.id for m in client.models.list().data] == [MODEL]
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
        with pytest.raises(openai.PermissionDeniedError):
            client.embeddings.create(model=MODEL, input="hello")
    assert caught.value.code == "insufficient_scope"
    challenge = parse_challenges(caught.value.response.headers.get_list("www-authenticate"))
    assert challenge["Bearer"]["error"] == "insufficient_scope"
    assert challenge["Bearer"]["scope"] == "chat"


def test_minted_token_chats(demo: Demo) -> None:
    token = demo.token("--scope", "chat models:read", "--tier", "agent")
    with demo.sdk(token) as client:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=8,
            temperature=0,
        )
        assert reply.choices[0].message.content
        assert reply.usage is not None
        assert reply.usage.completion_tokens > 0
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Count to three."}],
            max_tokens=8,
            stream=True,
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        assert "".join(pieces)
        completion = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=4)
        assert completion.choices[0].text


def test_embeddings_scope(demo: Demo) -> None:
    token = demo.token("--scope", "embeddings")
    with demo.sdk(token) as client:
        result = client.embeddings.create(model=MODEL, input="hello")
    assert len(result.data[0].embedding) > 0


def test_health_is_open_and_discovery_documents_agree(demo: Demo) -> None:
    with httpx.Client(base_url=demo.url, timeout=10) as http:
        assert http.get("/health").status_code == 200
        resource = http.get("/.well-known/oauth-protected-resource").json()
        assert resource["resource"] == demo.url
        assert set(resource["scopes_supported"]) == {"models:read", "chat", "embeddings", "mcp"}
        (issuer,) = resource["authorization_servers"]
        server = http.get(
            f"{issuer}/.well-known/oauth-authorization-server".removeprefix(demo.url)
        ).json()
        assert server["issuer"] == issuer
        keys = httpx.get(server["jwks_uri"], timeout=10).json()["keys"]
    assert [k["kid"] for k in keys] == ["reference-dev-1"]
    assert all("d" not in k for k in keys)  # only the public half is published
    assert oct(os.stat(demo.key_file).st_mode & 0o777) == "0o600"


def test_two_users_of_one_client_are_two_callers(demo: Demo) -> None:
    alice = demo.token("--scope", "chat", "--client-id", "webapp", "--subject", "alice")
    bob = demo.token("--scope", "chat", "--client-id", "webapp", "--subject", "bob")
    replies = []
    for token in (alice, bob, alice):
        with demo.sdk(token) as client:
            replies.append(
                client.chat.completions.with_raw_response.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": "Say hello."}],
                    max_tokens=4,
                    temperature=0,
                    extra_headers={"Idempotency-Key": "order-1"},
                )
            )
    first, bobs, again = replies
    # the same key and body through the same client: Bob gets his own answer, Alice her replay
    assert "idempotent-replayed" not in bobs.headers
    assert bobs.parse().id != first.parse().id
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse().id == first.parse().id
