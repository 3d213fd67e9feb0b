"""Payer-to-Payer fixtures: the requesting payer's backend client (or *not applicable*), its token, the valid
$member-match every negative is judged beside (the positive control), and one $bulk-member-match followed by a
$davinci-data-export of its MatchedMembers Group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from smart_conformance.checks import could_not_check, not_applicable
from smart_conformance.config import PayerMember, PayerToPayer, Target
from smart_conformance.http import RecordingClient
from smart_conformance.smart import pdex
from smart_conformance.smart.backend import BackendSession, must_have_token
from smart_conformance.smart.bulk import Export

NO_SECTION = "no payer_to_payer section configured (add it to the target file: the requesting payer's backend " \
             "client, its identifier, the Consent policy and the former members by role)"


NO_BULK = "the target's payer_to_payer.retrieval does not list bulk-export: no $bulk-member-match and Payer-to-Payer " \
          "$davinci-data-export to check (single-member exchange only)"


@pytest.fixture(scope="session")
def payer_to_payer(target: Target) -> PayerToPayer:
    """First of every Payer-to-Payer check: a target without the section is not applicable, never a failure."""
    if target.payer_to_payer is None:
        not_applicable(NO_SECTION)
    return target.payer_to_payer


@pytest.fixture(scope="session")
def p2p_session(payer_to_payer: PayerToPayer, http: RecordingClient, smart_config: dict[str, Any]) -> BackendSession:
    return BackendSession.at(http, payer_to_payer.backend_client, smart_config, "the payer's backend client")


@pytest.fixture
def p2p_token(p2p_session: BackendSession) -> str:
    """A token of its own for each check: short-lived backend tokens are legitimate, and a shared one may have
    expired by the time a check gets to it in a long or shuffled run."""
    return must_have_token(p2p_session.good(), "no token to call Payer-to-Payer with")


def fresh_token(session: BackendSession) -> str:
    """The token a session fixture uses at once (it is not kept for later checks)."""
    return must_have_token(session.good(), "no token to call Payer-to-Payer with")


@pytest.fixture(scope="session")
def member_match(p2p_session: BackendSession, payer_to_payer: PayerToPayer, target: Target) -> Callable[..., pdex.MatchCall]:
    """Send one $member-match for the consenting member with one change from the valid request: ``patient`` /
    ``subscriber_id`` change the demographics or the coverage, ``consent`` keyword arguments the Consent
    (pdex.hrex_consent), ``token`` the bearer (None: no Authorization header)."""

    def send(token: str | None, *, member: PayerMember | None = None, patient: dict[str, Any] | None = None,
             subscriber_id: str | None = None, **consent: Any) -> pdex.MatchCall:
        who = member or payer_to_payer.members["consenting"]
        local = pdex.LOCAL["consenting"]
        consent.setdefault("policy", payer_to_payer.consent_policy)
        consent.setdefault("recipient", payer_to_payer.requesting_payer)
        body = pdex.parameters([
            {"name": "MemberPatient", "resource": pdex.patient(who, local, **(patient or {}))},
            {"name": "CoverageToMatch", "resource": pdex.coverage(who, local, subscriber_id)},
            {"name": "Consent", "resource": pdex.hrex_consent(local, **consent)}])
        headers = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = p2p_session.http.post(f"{target.fhir_base_url}/Patient/$member-match", json=body, headers=headers)
        return pdex.MatchCall(body, response)

    return send


@pytest.fixture(scope="session")
def valid_match(member_match: Callable[..., pdex.MatchCall], p2p_session: BackendSession) -> pdex.MatchCall:
    """The valid request: the consenting member's demographics and coverage, a Consent the payer can honour."""
    return member_match(fresh_token(p2p_session))


@pytest.fixture(scope="session")
def bulk_match(payer_to_payer: PayerToPayer, p2p_session: BackendSession, target: Target) -> pdex.SubmittedMatch:
    """$bulk-member-match: the consenting member with a valid Consent, the not-consenting member (where configured)
    with an expired one, and a person the harness made up."""
    if not payer_to_payer.offers("bulk-export"):
        not_applicable(NO_BULK)
    submitted = {"consenting": payer_to_payer.members["consenting"], "unknown": pdex.UNKNOWN}
    if "not_consenting" in payer_to_payer.members:
        submitted["not_consenting"] = payer_to_payer.members["not_consenting"]
    bundles = []
    for role, member in submitted.items():
        local = pdex.LOCAL[role]
        window = {"start": -400, "end": -30} if role == "not_consenting" else {}
        bundles.append(pdex.member_bundle({
            "MemberPatient": pdex.patient(member, local), "CoverageToMatch": pdex.coverage(member, local),
            "Consent": pdex.hrex_consent(local, payer_to_payer.consent_policy, payer_to_payer.requesting_payer,
                                         **window)}))
    body = pdex.parameters(bundles)
    result = pdex.run_match(p2p_session.http, f"{target.fhir_base_url}/Group/$bulk-member-match",
                            fresh_token(p2p_session), body,
                            payer_to_payer.max_wait_s)
    return pdex.SubmittedMatch(submitted, body, result)


@pytest.fixture(scope="session")
def p2p_group_id(bulk_match: pdex.SubmittedMatch) -> str:
    if bulk_match.result.problem is not None:
        could_not_check(f"$bulk-member-match gave no result Groups ({bulk_match.result.problem}); "
                        "test_bulk_match_places_each_member judges that")
    group_id = bulk_match.result.matched_group_id
    if group_id is None:
        could_not_check("the MatchedMembers Group has no id to export; test_bulk_match_places_each_member judges that")
    return group_id


@pytest.fixture(scope="session")
def p2p_export(p2p_session: BackendSession, payer_to_payer: PayerToPayer, target: Target,
               p2p_group_id: str) -> Export:
    """$davinci-data-export of the MatchedMembers Group (no exportType: PDex defines provider-* values only; no
    _since: the whole window), polled to the end."""
    return pdex.run_export(p2p_session.http, fresh_token(p2p_session), f"{target.fhir_base_url}/Group/{p2p_group_id}/"
                           "$davinci-data-export", pdex.export_parameters(None), payer_to_payer.max_wait_s)
