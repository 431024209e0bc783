from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

__all__ = ["Store"]


class Store(ABC):
    """The small async key-value protocol every stateful middleware is written against.

    Keys are strings chosen by the middlewares; values are bytes. TTLs are seconds (floats).
    Each primitive is atomic and costs one round trip on a networked backend. A backend fault
    raises :class:`~aimiddleware.exceptions.StoreUnavailable` within the store's timeout.

    Every key has two independent slots: a value (``get``/``set``/``claim``/``incr`` ...) and an
    append-only chunk log (``append``/``chunks``), used to record a streamed response while it
    is sent. ``delete`` and ``release`` remove both. On Redis Cluster both live in one hash slot.

    Capability flags:

    ``shared``
        ``True`` when every process that opens the same URL sees the same data (Redis);
        ``False`` for per-process stores (memory). Middlewares log a warning when a per-process
        store is used behind several workers.
    """

    backend: ClassVar[str] = "abstract"
    shared: ClassVar[bool] = False

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or ``None`` if absent or expired."""

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Set ``key`` to ``value`` for ``ttl`` seconds, replacing any value."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the value and the chunk log of ``key``."""

    @abstractmethod
    async def claim(self, key: str, value: bytes, ttl: float) -> bytes | None:
        """Set ``key`` to ``value`` for ``ttl`` seconds only if it has no value.

        Returns ``None`` when this call won the claim (a lease that expires after ``ttl``),
        otherwise the value that is already there, so "claim or read" is one round trip.
        """

    @abstractmethod
    async def renew(self, key: str, expected: bytes, ttl: float) -> bool:
        """Extend the TTL of ``key`` to ``ttl`` if its value is still ``expected``."""

    @abstractmethod
    async def replace(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        """Compare-and-set: set ``key`` to ``value`` for ``ttl`` if its value is ``expected``."""

    @abstractmethod
    async def release(self, key: str, expected: bytes) -> bool:
        """Compare-and-delete: drop value and chunk log of ``key`` if its value is ``expected``."""

    @abstractmethod
    async def incr(self, key: str, amount: int, ttl: float) -> int:
        """Add ``amount`` (may be negative) to the counter ``key`` and return the new total.

        The TTL is set when the counter is created and not extended by later increments.
        """

    @abstractmethod
    async def append(self, key: str, chunk: bytes, ttl: float) -> int:
        """Append ``chunk`` to the log of ``key``, (re)set the log's TTL, return its length."""

    @abstractmethod
    async def chunks(self, key: str, start: int = 0) -> list[bytes]:
        """The chunks of the log of ``key`` from index ``start`` on, in append order."""

    @abstractmethod
    async def ping(self) -> None:
        """Check the backend answers; raise ``StoreUnavailable`` if it does not."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook, nothing to release by default)
        """Release connections. The store must not be used afterwards."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
