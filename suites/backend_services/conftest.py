"""Backend Services fixtures: the target's backend client (or *not applicable*), its token endpoint, and the one
happy-path client_credentials grant the checks share. Negatives each send their own assertions."""

from __future__ import annotations

from typing import Any

import pytest

from smart_conformance.config import BackendClient, Target
from smart_conformance.http import RecordingClient
from smart_conformance.smart.backend import (
    BackendSession,
    Grant,
    configured_backend_client,
)


@pytest.fixture(scope="session")
def backend_client(target: Target) -> BackendClient:
    """First of every backend check: a target without a backend client is not applicable, never a failure."""
    return configured_backend_client(target)


@pytest.fixture(scope="session")
def backend(backend_client: BackendClient, http: RecordingClient, smart_config: dict[str, Any]) -> BackendSession:
    return BackendSession.at(http, backend_client, smart_config, "the backend client")


@pytest.fixture(scope="session")
def backend_grant(backend: BackendSession) -> Grant:
    """The happy path, once: a good assertion and the registered system scopes."""
    return backend.good()


@pytest.fixture
def live_backend_grant(backend: BackendSession) -> Grant:
    """A grant of its own for a check that uses the token: short-lived backend tokens are legitimate, and a shared
    one may have expired by the time a check gets to it in a long or shuffled run."""
    return backend.good()
