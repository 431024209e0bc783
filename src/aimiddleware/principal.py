"""Who is calling: the principal the auth middleware establishes and the others key on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Principal", "namespaced_id"]

Credential = Literal["jwt", "introspection", "api_key", "anonymous", "custom"]
Namespace = Literal["sub", "client", "key"]


def namespaced_id(namespace: Namespace, name: str, issuer: str | None = None) -> str:
    """The id of a caller: its namespace, its name and, for tokens, the issuer that vouches for it.

    ``sub`` is a token's subject (a user), ``client`` a token's OAuth client when the token
    names no subject, ``key`` an API key. An issuer's ``sub`` is unique only at that issuer,
    so two issuers' ``alice`` are two callers; and an API key ``webapp`` is not the OAuth
    client ``webapp``. ``%`` and ``@`` in the name are escaped, so the first ``@`` always
    starts the issuer and no two (namespace, name, issuer) give one id.

    >>> namespaced_id("sub", "alice", "https://auth.example.com")
    'sub:alice@https://auth.example.com'
    >>> namespaced_id("sub", "a@b", "c"), namespaced_id("sub", "a", "b@c")
    ('sub:a%40b@c', 'sub:a@b@c')
    >>> namespaced_id("key", "webapp")
    'key:webapp'
    """
    escaped = name.replace("%", "%25").replace("@", "%40")
    if issuer is None:
        return f"{namespace}:{escaped}"
    return f"{namespace}:{escaped}@{issuer}"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. Never holds the raw credential.

    ``id`` is the stable key rate limits and idempotency records are scoped by. For a token it
    is the issuer and the subject (``sub:<sub>@<iss>``: each user of one OAuth client is a
    caller of their own); a token without ``sub`` is its client (``client:<client_id>@<iss>``);
    an API key is ``key:<id>``. See :func:`namespaced_id`. ``client_key`` is the OAuth client
    the caller came through, for limits counted per client.

    >>> Principal(id="agent-7", scopes=frozenset({"chat"}), tier="agent").has_scopes(["chat"])
    True
    """

    id: str
    subject: str | None = None
    client_id: str | None = None
    scopes: frozenset[str] = frozenset()
    tier: str | None = None
    token_id: str | None = None
    credential: Credential = "custom"
    issuer: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def has_scopes(self, required: frozenset[str] | set[str] | list[str] | tuple[str, ...]) -> bool:
        """Whether every scope in ``required`` was granted."""
        return self.scopes.issuperset(required)

    @property
    def client_key(self) -> str:
        """The key of the OAuth client behind a token (``client:<client_id>@<iss>``).

        The principal's own ``id`` when it is no token or names no client: an API key is its
        own client.

        >>> Principal(id="sub:alice@https://as", client_id="webapp", issuer="https://as",
        ...           credential="jwt").client_key
        'client:webapp@https://as'
        """
        if self.client_id is None or self.credential not in ("jwt", "introspection"):
            return self.id
        return namespaced_id("client", self.client_id, self.issuer)


def __getattr__(name: str) -> Any:
    # get_principal and set_principal live in aimiddleware.context (which imports this module);
    # still reachable here, where they were first documented
    if name in ("get_principal", "set_principal"):
        from . import context

        return getattr(context, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
