"""The exceptions aimiddleware raises.

All of them derive from one base, so ``except AimiddlewareError`` catches
everything the library raises on purpose::

    AimiddlewareError
    ├── ConfigurationError      bad options, raised at start-up by a middleware's __init__
    └── StoreUnavailable        a store backend (Redis ...) failed or timed out
"""

from __future__ import annotations

__all__ = ["AimiddlewareError", "ConfigurationError", "StoreUnavailable"]


class AimiddlewareError(Exception):
    """Base class of every exception aimiddleware raises."""


class ConfigurationError(AimiddlewareError, ValueError):
    """An option is missing, malformed or contradicts another one.

    Raised once, when a middleware or a store is constructed, never per request.
    """


class StoreUnavailable(AimiddlewareError):  # noqa: N818 (the name says what happened)
    """A store operation failed: the backend is unreachable, timed out or refused the call.

    Middlewares turn this into their documented fail-open or fail-closed behaviour;
    it never reaches the client as a bare 500.

    :param operation: the store primitive that failed (``"claim"``, ``"append"`` ...).
    :param backend: a short name of the backend (``"redis"``, ``"memory"``); never a URL
        with credentials.
    """

    def __init__(self, message: str, *, operation: str = "", backend: str = "") -> None:
        super().__init__(message)
        self.operation = operation
        self.backend = backend
