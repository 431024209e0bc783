"""Who is calling: the principal the auth middleware establishes and the others key on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ._asgi import Scope

__all__ = ["Principal", "get_principal", "set_principal"]

_STATE_KEY: Final = "principal"

Credential = Literal["jwt", "introspection", "api_key", "anonymous", "custom"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. Never holds the raw credential.

    ``id`` is the stable key rate limits and idempotency records are scoped by: the API key's id,
    or ``client_id``/``sub`` of a token.

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
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def has_scopes(self, required: frozenset[str] | set[str] | list[str] | tuple[str, ...]) -> bool:
        """Whether every scope in ``required`` was granted."""
        return self.scopes.issuperset(required)


def set_principal(scope: Scope, principal: Principal) -> None:
    """Attach ``principal`` to the request: ``scope["state"]["principal"]`` and ``scope["auth"]``.

    ``request.state.principal`` then works in Starlette and FastAPI handlers.
    """
    state = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    state[_STATE_KEY] = principal
    scope["auth"] = principal


def get_principal(scope: Scope) -> Principal | None:
    """The principal an auth middleware attached to this request, or ``None``."""
    state = scope.get("state")
    if state:
        principal = state.get(_STATE_KEY)
        if isinstance(principal, Principal):
            return principal
    return None
