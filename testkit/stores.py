"""A store proxy that counts what each request costs on the store it wraps."""

from __future__ import annotations

from aimiddleware.stores import Store


class CountingStore(Store):
    """A proxy that counts the round trips each primitive costs on the wrapped store."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def get(self, key: str) -> bytes | None:
        self.calls.append("get")
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self.calls.append("set")
        await self.inner.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        self.calls.append("delete")
        await self.inner.delete(key)

    async def claim(self, key: str, value: bytes, ttl: float) -> bytes | None:
        self.calls.append("claim")
        return await self.inner.claim(key, value, ttl)

    async def renew(self, key: str, expected: bytes, ttl: float) -> bool:
        self.calls.append("renew")
        return await self.inner.renew(key, expected, ttl)

    async def replace(self, key: str, expected: bytes, value: bytes, ttl: float) -> bool:
        self.calls.append("replace")
        return await self.inner.replace(key, expected, value, ttl)

    async def release(self, key: str, expected: bytes) -> bool:
        self.calls.append("release")
        return await self.inner.release(key, expected)

    async def incr(self, key: str, amount: int, ttl: float) -> int:
        self.calls.append("incr")
        return await self.inner.incr(key, amount, ttl)

    async def append(self, key: str, chunk: bytes, ttl: float) -> int:
        self.calls.append("append")
        return await self.inner.append(key, chunk, ttl)

    async def chunks(self, key: str, start: int = 0) -> list[bytes]:
        self.calls.append("chunks")
        return await self.inner.chunks(key, start)

    async def ping(self) -> None:
        self.calls.append("ping")
        await self.inner.ping()
