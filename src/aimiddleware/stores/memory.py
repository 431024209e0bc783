from __future__ import annotations

import heapq
import time
from typing import ClassVar

from ._base import Store

__all__ = ["MemoryStore"]

_VALUE = 0
_LOG = 1


class _Entry:
    __slots__ = ("deadline", "value")

    def __init__(self, value: bytes | int | list[bytes], deadline: float) -> None:
        self.value = value
        self.deadline = deadline

    def as_bytes(self) -> bytes:
        value = self.value
        if isinstance(value, int):
            return str(value).encode()
        if isinstance(value, list):  # pragma: no cover (values and logs never share a slot)
            raise TypeError("a chunk log has no value")
        return value


class MemoryStore(Store):
    """The embedded default: an in-process store with TTLs, for a single worker.

    No primitive awaits, so each one is atomic on the event loop without locks. Expired entries
    are dropped when touched and swept from a deadline heap on writes, so memory stays bounded
    by the live keys.

    >>> store = MemoryStore()
    """

    backend: ClassVar[str] = "memory"
    shared: ClassVar[bool] = False

    def __init__(self) -> None:
        self._slots: tuple[dict[str, _Entry], dict[str, _Entry]] = ({}, {})
        self._deadlines: list[tuple[float, int, str]] = []

    # -- internals ---------------------------------------------------------------------------

    def _live(self, slot: int, key: str, now: float) -> _Entry | None:
        entry = self._slots[slot].get(key)
        if entry is None:
            return None
        if entry.deadline <= now:
            del self._slots[slot][key]
            return None
        return entry

    def _put(self, slot: int, key: str, value: bytes | int | list[bytes], ttl: float) -> None:
        now = time.monotonic()
        self._sweep(now)
        entry = _Entry(value, now + ttl)
        self._slots[slot][key] = entry
        heapq.heappush(self._deadlines, (entry.deadline, slot, key))

    def _touch(self, slot: int, key: str, entry: _Entry, ttl: float) -> None:
        entry.deadline = time.monotonic() + ttl
        heapq.heappush(self._deadlines, (entry.deadline, slot, key))

    def _sweep(self, now: float) -> None:
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, slot, key = heapq.heappop(heap)
            entry = self._slots[slot].get(key)
            if entry is not None and entry.deadline <= now:
                del self._slots[slot][key]
        # renewals leave stale deadlines behind; rebuild the heap when they dominate it
        live = len(self._slots[_VALUE]) + len(self._slots[_LOG])
        if len(heap) > 1024 and len(heap) > 4 * live:
            self._deadlines = [
                (entry.deadline, slot, key)
                for slot in (_VALUE, _LOG)
                for key, entry in self._slots[slot].items()
            ]
            heapq.heapify(self._deadlines)

    # -- primitives --------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        entry = self._live(_VALUE, key, time.monotonic())
        return None if entry is None else entry.as_bytes()

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._put(_VALUE, key, value, ttl)

    async def delete(self, key: str) -> None:
        self._slots[_VALUE].pop(key, None)
        self._slots[_LOG].pop(key, None)

    async def claim(self, key: str, value: bytes, ttl: float) -> bytes | None:
        entry = self._live(_VALUE, key, time.monotonic())
        if entry is not None:
            return entry.as_bytes()
        self._put(_VALUE, key, value, ttl)
        return None

    async def renew(self, key: str, expected: bytes, ttl: float) -> bool:
        entry = self._live(_VALUE, key, time.monotonic())
        if entry is None or entry.value != expected:
            return False
        self._touch(_VALUE, key, entry, ttl)
        return True

    async def replace(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        entry = self._live(_VALUE, key, time.monotonic())
        if entry is None or entry.value != expected:
            return False
        entry.value = value
        self._touch(_VALUE, key, entry, ttl)
        return True

    async def release(self, key: str, expected: bytes) -> bool:
        entry = self._live(_VALUE, key, time.monotonic())
        if entry is None or entry.value != expected:
            return False
        await self.delete(key)
        return True

    async def incr(self, key: str, amount: int, ttl: float) -> int:
        entry = self._live(_VALUE, key, time.monotonic())
        if entry is None:
            self._put(_VALUE, key, amount, ttl)
            return amount
        total = int(entry.as_bytes()) + amount
        entry.value = total
        return total

    async def append(self, key: str, chunk: bytes, ttl: float) -> int:
        entry = self._live(_LOG, key, time.monotonic())
        if entry is None:
            self._put(_LOG, key, [chunk], ttl)
            return 1
        assert isinstance(entry.value, list)
        entry.value.append(chunk)
        self._touch(_LOG, key, entry, ttl)
        return len(entry.value)

    async def chunks(self, key: str, start: int = 0) -> list[bytes]:
        entry = self._live(_LOG, key, time.monotonic())
        if entry is None or not isinstance(entry.value, list):
            return []
        return entry.value[start:]

    async def ping(self) -> None:
        return None

    def __repr__(self) -> str:
        return "MemoryStore()"
