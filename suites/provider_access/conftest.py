"""Provider Access fixtures: the provider's backend client (or *not applicable*), its token, one
$provider-member-match with every configured member role, and one $davinci-data-export of the MatchedMembers Group
polled to completion. Checks that need another export (with patient, _type, _since or another client) start their own.
"""

from __future__ import annotations

from typing import Any

import pytest

from smart_conformance.checks import could_not_check, not_applicable
from smart_conformance.config import ProviderAccess, Target
from smart_conformance.http import RecordingClient
from smart_conformance.smart import pdex
from smart_conformance.smart.backend import BackendSession, must_have_token
from smart_conformance.smart.bulk import Export

NO_SECTION = "no provider_access section configured (add it to the target file: the provider's backend client and " \
             "its test members by role)"


@pytest.fixture(scope="session")
def provider_access(target: Target) -> ProviderAccess:
    """First of every Provider Access check: a target without the section is not applicable, never a failure."""
    if target.provider_access is None:
        not_applicable(NO_SECTION)
    return target.provider_access


@pytest.fixture(scope="session")
def pa_session(provider_access: ProviderAccess, http: RecordingClient,
               smart_config: dict[str, Any]) -> BackendSession:
    return BackendSession.at(http, provider_access.backend_client, smart_config, "the provider's backend client")


@pytest.fixture
def pa_token(pa_session: BackendSession) -> str:
    """A token of its own for each check: short-lived backend tokens are legitimate, and a shared one may have
    expired by the time a check gets to it in a long or shuffled run."""
    return must_have_token(pa_session.good(), "no token to call Provider Access with")


def fresh_token(session: BackendSession) -> str:
    """The token a session fixture uses at once (it is not kept for later checks)."""
    return must_have_token(session.good(), "no token to call Provider Access with")


@pytest.fixture(scope="session")
def provider_match(provider_access: ProviderAccess, pa_session: BackendSession,
                   target: Target) -> pdex.SubmittedMatch:
    """Every configured role plus a person the harness made up, in one $provider-member-match."""
    pa_token = fresh_token(pa_session)
    submitted = {**provider_access.members, "unknown": pdex.UNKNOWN}
    body = pdex.provider_match_body(submitted)
    result = pdex.run_match(pa_session.http, f"{target.fhir_base_url}/Group/$provider-member-match", pa_token, body,
                            provider_access.max_wait_s)
    return pdex.SubmittedMatch(submitted, body, result)


@pytest.fixture(scope="session")
def matched_group_id(provider_match: pdex.SubmittedMatch) -> str:
    result = provider_match.result
    if result.problem is not None:
        could_not_check(f"$provider-member-match gave no result Groups ({result.problem}); "
                        "test_attributed_member_matched judges that")
    group_id = result.matched_group_id
    if group_id is None:
        could_not_check("the MatchedMembers Group has no id to export; test_attributed_member_matched judges that")
    return group_id


def export_url(target: Target, group_id: str) -> str:
    return f"{target.fhir_base_url}/Group/{group_id}/$davinci-data-export"


@pytest.fixture(scope="session")
def matched_export(pa_session: BackendSession, provider_access: ProviderAccess, target: Target,
                   matched_group_id: str) -> Export:
    """$davinci-data-export of the MatchedMembers Group (provider-download, no other parameter), polled to the end."""
    return pdex.run_export(pa_session.http, fresh_token(pa_session), export_url(target, matched_group_id),
                           pdex.export_parameters(),
                           provider_access.max_wait_s)
