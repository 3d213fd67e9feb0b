"""One clean reference server for the whole session; fault tests start their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smart_conformance.reference.server import ReferenceServer
from tests.reference.launcher import Launch, Launcher


@pytest.fixture(scope="session")
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def launcher(server: ReferenceServer) -> Launcher:
    return Launcher(server)


@pytest.fixture(scope="session")
def alice(launcher: Launcher) -> Launch:
    """One full launch by alice, shared by read-only tests (do not revoke its tokens)."""
    return launcher.launch(nonce="n-0S6_WzA2Mj")
