"""Principal ids: one namespace per kind of caller, the issuer in every token's id."""

from __future__ import annotations

from aimiddleware import Principal
from aimiddleware.principal import namespaced_id


def test_ids_are_namespaced_and_carry_the_issuer() -> None:
    assert namespaced_id("sub", "alice", "https://as.example") == "sub:alice@https://as.example"
    assert namespaced_id("client", "webapp", "https://as.example") == (
        "client:webapp@https://as.example"
    )
    assert namespaced_id("key", "webapp") == "key:webapp"


def test_no_two_callers_share_an_id() -> None:
    callers = [
        ("sub", "a@b", "c"),
        ("sub", "a", "b@c"),
        ("sub", "a%40b", "c"),
        ("sub", "alice", "https://one.example"),
        ("sub", "alice", "https://two.example"),
        ("client", "alice", "https://one.example"),
        ("key", "alice", None),
        ("sub", "alice", None),
        ("sub", "alice", ""),
    ]
    ids = [namespaced_id(kind, name, issuer) for kind, name, issuer in callers]  # type: ignore[arg-type]
    assert len(set(ids)) == len(ids)


def test_client_key_is_the_tokens_client_or_the_principal_itself() -> None:
    token = Principal(
        id=namespaced_id("sub", "alice", "https://as"),
        client_id="webapp",
        issuer="https://as",
        credential="jwt",
    )
    assert token.client_key == "client:webapp@https://as"
    key = Principal(id="key:webapp", client_id="webapp", credential="api_key")
    assert key.client_key == "key:webapp"  # an API key is its own client
    assert Principal(id="custom-1").client_key == "custom-1"
