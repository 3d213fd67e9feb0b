"""Bulk export fixtures: the backend client (or *not applicable*), its token, and one Group export run to completion
(kick-off, then status polls that honour Retry-After within the target's bounded wait). Checks that need another
export (with _type, or to cancel) start their own."""

from __future__ import annotations

from typing import Any

import pytest

from smart_conformance.checks import not_applicable
from smart_conformance.config import BackendClient, Bulk, Target
from smart_conformance.http import RecordingClient
from smart_conformance.smart.backend import (
    BackendSession,
    Grant,
    configured_backend_client,
    must_have_token,
)
from smart_conformance.smart.bulk import Export, kickoff, poll

NO_BULK = "no bulk section configured (add bulk.group_id to the target file)"


@pytest.fixture(scope="session")
def bulk_backend_client(target: Target) -> BackendClient:
    return configured_backend_client(target)


@pytest.fixture(scope="session")
def bulk_settings(bulk_backend_client: BackendClient, target: Target) -> Bulk:
    if target.bulk is None:
        not_applicable(NO_BULK)
    return target.bulk


@pytest.fixture(scope="session")
def bulk_session(bulk_settings: Bulk, bulk_backend_client: BackendClient, http: RecordingClient,
                 smart_config: dict[str, Any]) -> BackendSession:
    return BackendSession.at(http, bulk_backend_client, smart_config, "the backend client")


@pytest.fixture
def bulk_token(bulk_session: BackendSession) -> str:
    """A fresh system token for each check: Backend Services tokens may live five minutes or less, less than a run."""
    grant: Grant = bulk_session.good()
    return must_have_token(grant, "no token to export with")


@pytest.fixture(scope="session")
def group_export_url(bulk_settings: Bulk, target: Target) -> str:
    return f"{target.fhir_base_url}/Group/{bulk_settings.group_id}/$export"


@pytest.fixture(scope="session")
def export_job(bulk_session: BackendSession, bulk_settings: Bulk, group_export_url: str) -> Export:
    """The Group export (no _type), polled to completion within bulk.max_wait_s, with a token of its own."""
    token = must_have_token(bulk_session.good(), "no token to export with")
    job = kickoff(bulk_session.http, group_export_url, token)
    return poll(bulk_session.http, job, token, bulk_settings.max_wait_s)
