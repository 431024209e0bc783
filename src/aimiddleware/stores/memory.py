from __future__ import annotations

import time
from typing import ClassVar, Final

from .._config import check_int
from .._lru import LRUCache, Node
from ._base import Store

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_ENTRIES", "MemoryStore"]

DEFAULT_MAX_ENTRIES: Final = 100_000
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024

_VALUE = 0
_LOG = 1
# what an entry costs beyond its key and payload (the node, the key tuple, the table slot)
_OVERHEAD: Final = 128

Value = bytes | int | list[bytes]


def _size(key: str, value: Value) -> int:
    if isinstance(value, bytes):
        return _OVERHEAD + len(key) + len(value)
    if isinstance(value, int):
        return _OVERHEAD + len(key) + 8
    return _OVERHEAD + len(key) + sum(len(chunk) + 40 for chunk in value)


def _as_bytes(value: Value) -> bytes:
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, list):  # pragma: no cover (values and logs never share a slot)
        raise TypeError("a chunk log has no value")
    return value


class MemoryStore(Store):
    """The embedded default: an in-process store with TTLs, for a single worker.

    No primitive awaits, so each one is atomic on the event loop without locks. The store is
    bounded: at most ``max_entries`` keys (a value and a chunk log count one each) and
    ``max_bytes`` of keys and payloads. When a write goes past a bound, expired entries go
    first, then the least recently used; each eviction counts in :attr:`evictions` and is
    reported by a warning line (at most once a minute). An evicted idempotency record is
    run again on a retry, an evicted counter starts again from zero: behind real traffic, give
    the store room for the keys one TTL sees, or use Redis.

    >>> store = MemoryStore(max_entries=10_000, max_bytes=16 * 1024 * 1024)
    """

    backend: ClassVar[str] = "memory"
    shared: ClassVar[bool] = False

    def __init__(
        self, *, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        check_int("max_entries", max_entries, minimum=1)
        check_int("max_bytes", max_bytes, minimum=1)
        self._table: LRUCache[tuple[int, str], Value] = LRUCache(
            "memory store", max_entries, max_bytes
        )

    @property
    def max_entries(self) -> int:
        return self._table.max_entries

    @property
    def max_bytes(self) -> int:
        return self._table.max_bytes or 0

    @property
    def entries(self) -> int:
        """Keys held now (a value and a chunk log count one each), expired ones included."""
        return len(self._table)

    @property
    def nbytes(self) -> int:
        """The estimated size of what is held now, in bytes."""
        return self._table.nbytes

    @property
    def evictions(self) -> int:
        """Live entries dropped so far to stay within the bounds."""
        return self._table.evictions

    # -- internals ---------------------------------------------------------------------------

    def _live(self, slot: int, key: str) -> Node[Value] | None:
        return self._table.node((slot, key), time.monotonic())

    def _put(self, slot: int, key: str, value: Value, ttl: float) -> None:
        now = time.monotonic()
        self._table.put((slot, key), value, now, now + ttl, _size(key, value))

    def _touch(self, slot: int, key: str, entry: Node[Value], ttl: float) -> None:
        self._table.touch((slot, key), entry, time.monotonic() + ttl)

    # -- primitives --------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        entry = self._live(_VALUE, key)
        return None if entry is None else _as_bytes(entry.value)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._put(_VALUE, key, value, ttl)

    async def delete(self, key: str) -> None:
        self._table.pop((_VALUE, key))
        self._table.pop((_LOG, key))

    async def claim(self, key: str, value: bytes, ttl: float) -> bytes | None:
        # _live() and _put(), inline: one claim per idempotent request
        now = time.monotonic()
        table = self._table
        entry = table.node((_VALUE, key), now)
        if entry is not None:
            return _as_bytes(entry.value)
        table.put((_VALUE, key), value, now, now + ttl, _OVERHEAD + len(key) + len(value))
        return None

    async def renew(self, key: str, expected: bytes, ttl: float) -> bool:
        entry = self._live(_VALUE, key)
        if entry is None or entry.value != expected:
            return False
        self._touch(_VALUE, key, entry, ttl)
        return True

    async def replace(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        now = time.monotonic()
        table = self._table
        slot = (_VALUE, key)
        entry = table.node(slot, now)
        if entry is None or entry.value != expected:
            return False
        entry.value = value
        table.touch(slot, entry, now + ttl)
        table.resize(entry, _OVERHEAD + len(key) + len(value), now)
        return True

    async def release(self, key: str, expected: bytes) -> bool:
        entry = self._live(_VALUE, key)
        if entry is None or entry.value != expected:
            return False
        await self.delete(key)
        return True

    async def incr(self, key: str, amount: int, ttl: float) -> int:
        entry = self._live(_VALUE, key)
        if entry is None:
            self._put(_VALUE, key, amount, ttl)
            return amount
        total = int(_as_bytes(entry.value)) + amount
        entry.value = total
        return total

    async def append(self, key: str, chunk: bytes, ttl: float) -> int:
        entry = self._live(_LOG, key)
        if entry is None:
            self._put(_LOG, key, [chunk], ttl)
            return 1
        log = entry.value
        if not isinstance(log, list):  # pragma: no cover (values and logs never share a slot)
            raise TypeError("a value has no chunk log")
        log.append(chunk)
        self._touch(_LOG, key, entry, ttl)
        self._table.resize(entry, entry.size + len(chunk) + 40, time.monotonic())
        return len(log)

    async def chunks(self, key: str, start: int = 0) -> list[bytes]:
        entry = self._live(_LOG, key)
        if entry is None or not isinstance(entry.value, list):
            return []
        return entry.value[start:]

    async def ping(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"MemoryStore(max_entries={self.max_entries}, max_bytes={self.max_bytes})"
