from __future__ import annotations

from collections.abc import Iterator

import pytest

from .issuer import Issuer, serving


@pytest.fixture(scope="session")
def issuer_server() -> Iterator[Issuer]:
    with serving(Issuer()) as issuer:
        yield issuer


@pytest.fixture
def issuer(issuer_server: Issuer) -> Issuer:
    issuer_server.reset()
    return issuer_server
