from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..reference_app.conftest import serve_reference
from ..servers import ThreadedServer


@pytest.fixture(scope="session")
def docs_server() -> Iterator[ThreadedServer]:
    """The reference app the examples talk to where they address the demo server."""
    with serve_reference() as server:
        yield server
