from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ..reference_app.conftest import serve_reference
from ..servers import ThreadedServer, free_port


@pytest.fixture(scope="session")
def docs_settings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo server's settings as `make demo` has them: auth on, its own issuer key."""
    key_file = tmp_path_factory.mktemp("issuer") / "issuer-key.json"
    return {"port": free_port(), "auth": True, "auth_key_file": key_file}


@pytest.fixture(scope="session")
def docs_server(docs_settings: dict[str, Any]) -> Iterator[ThreadedServer]:
    """The reference app the examples talk to where they address the demo server."""
    with serve_reference(**docs_settings) as server:
        yield server


@pytest.fixture(scope="session")
def docs_api_key(docs_settings: dict[str, Any]) -> str:
    """What the README has readers export as OPENAI_API_KEY: a token the docs server trusts."""
    from reference_app import Settings
    from reference_app.auth import mint

    return mint(Settings(**docs_settings), scope="chat models:read embeddings")
