"""Fetching the JSON documents the resource server needs (JWKS, metadata, introspection).

Each fetch has one deadline for the whole exchange (connect, headers and every byte of the
body), and its body is counted while it streams in: a server that trickles one byte at a time
cannot hold authentication longer than the deadline, and one that sends a huge document is cut
off at the byte cap instead of being read whole.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = ["fetch_json"]


async def fetch_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    limit: int,
    deadline: float,
    error: type[Exception],
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON object of a 200 answer of at most ``limit`` bytes, within ``deadline`` seconds.

    :raises error: transport failure, deadline passed, non-200 status, body over ``limit``,
        or a body that is not a JSON object. The message names the URL, never the payload.
    """
    import httpx

    sent = {"accept": "application/json", **(headers or {})}
    try:
        async with asyncio.timeout(deadline):
            body = await _read(client, method, url, sent, data, limit, deadline, error)
    except TimeoutError:
        raise error(f"no complete answer within {deadline:g} s from {url}") from None
    except httpx.HTTPError as exc:
        raise error(f"{type(exc).__name__} from {url}") from exc
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise error(f"invalid JSON from {url}") from exc
    if not isinstance(document, dict):
        raise error(f"not a JSON object from {url}")
    return document


async def _read(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    data: Mapping[str, str] | None,
    limit: int,
    deadline: float,
    error: type[Exception],
) -> bytes:
    too_large = f"answer larger than {limit} bytes from {url}"
    async with client.stream(method, url, headers=headers, data=data, timeout=deadline) as answer:
        if answer.status_code != 200:
            raise error(f"HTTP {answer.status_code} from {url}")
        declared = answer.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise error(too_large)
        chunks: list[bytes] = []
        size = 0
        async for chunk in answer.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise error(too_large)  # leaving the block closes the connection unread
            chunks.append(chunk)
    return b"".join(chunks)
