"""Reading the JSON documents the resource server fetches (JWKS, metadata, introspection)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


def json_object(
    response: httpx.Response, url: str, limit: int, error: type[Exception]
) -> dict[str, Any]:
    """The JSON object of a 200 answer no larger than ``limit`` bytes; else raises ``error``."""
    if response.status_code != 200:
        raise error(f"HTTP {response.status_code} from {url}")
    if len(response.content) > limit:
        raise error(f"answer larger than {limit} bytes from {url}")
    try:
        document = json.loads(response.content)
    except ValueError as exc:
        raise error(f"invalid JSON from {url}") from exc
    if not isinstance(document, dict):
        raise error(f"not a JSON object from {url}")
    return document
