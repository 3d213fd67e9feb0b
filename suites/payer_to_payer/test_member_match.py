"""Payer-to-Payer, single member: HRex Patient/$member-match with Consent

PDex Payer-to-Payer (single member) §Member Match with Consent and §Evaluation of Consent, HRex $member-match: the
new payer sends the member's demographics (MemberPatient), the old coverage (CoverageToMatch) and the member's
Consent, with a SMART Backend Services token (§pdex-142). A unique match whose Consent the payer can honour gets the
member's identifier; no match or several get 422 with an OperationOutcome; a match whose Consent cannot be honoured
(denied, expired, for another payer, a policy the payer cannot honour) gets 422 and no identifier. Each negative
changes one thing from the valid request, which matched in the same run (the positive control). Every no-match must
look like every other, so the answer does not reveal who is a member; timing is measured and reported, never judged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from smart_conformance.checks import could_not_check, describe, expect, expectations, not_applicable
from smart_conformance.config import PayerToPayer
from smart_conformance.http import current_evidence
from smart_conformance.smart import pdex
from smart_conformance.smart.backend import BackendSession
from smart_conformance.smart.discovery import Document
from smart_conformance.testplan import Fault, Needs, needs, proves

MemberMatch = Callable[..., pdex.MatchCall]
P2P_OPERATIONS = ("member-match", "bulk-member-match", "davinci-data-export")


def _issue_codes(call: pdex.MatchCall) -> list[tuple[str, str, str]]:
    body = call.json
    out = []
    for issue in (body.get("issue") or []) if isinstance(body, dict) else []:
        if isinstance(issue, dict):
            details = ",".join(sorted(str(c.get("code")) for c in (issue.get("details") or {}).get("coding") or []
                                      if isinstance(c, dict)))
            out.append((str(issue.get("severity")), str(issue.get("code")), details))
    return sorted(out)


def _refused(call: pdex.MatchCall, what: str, requirement: str, session: BackendSession) -> None:
    """422 with an OperationOutcome, and no member identifier."""
    body = call.json
    exchange = session.http.exchange_for(call.response)
    with expectations() as check:
        check.expect(call.member_identifier is None, expected=f"{what}: no member identifier in the answer",
                     actual=f"HTTP {call.response.status_code} with {describe(call.member_identifier, 200)}",
                     requirement=requirement, exchange=exchange)
        check.expect(call.response.status_code == 422 and isinstance(body, dict)
                     and body.get("resourceType") == "OperationOutcome",
                     expected=f"{what}: HTTP 422 with an OperationOutcome",
                     actual=f"HTTP {call.response.status_code} {body.get('resourceType') if isinstance(body, dict) else ''}",
                     requirement=requirement, exchange=exchange)


@pytest.mark.requirement("PDEX-PA-14")
@proves(Fault.PDEX_OPERATIONS_NOT_ADVERTISED)
@needs(Needs.CAPABILITY_STATEMENT)
def test_payer_to_payer_operations_advertised(payer_to_payer: PayerToPayer, capability_statement: Document) -> None:
    """The CapabilityStatement lists $member-match, and $bulk-member-match and $davinci-data-export where the target
    offers the bulk exchange (payer_to_payer.retrieval)."""
    if not capability_statement.ok:
        could_not_check(f"the CapabilityStatement could not be read (HTTP {capability_statement.status})")
    found = pdex.advertised_operations(capability_statement.json)
    wanted = P2P_OPERATIONS if payer_to_payer.offers("bulk-export") else P2P_OPERATIONS[:1]
    missing = [op for op in wanted if op not in found]
    expect(not missing, expected=f"CapabilityStatement operations {', '.join(wanted)}",
           actual=f"missing {', '.join(missing)}; listed: {', '.join(sorted(found - {''})) or 'none'}",
           exchange=capability_statement.exchange)


@pytest.mark.requirement("PDEX-P2P-02")
@proves(Fault.MEMBER_MATCH_IDENTIFIER_MISSING)
def test_member_match_with_valid_consent(p2p_session: BackendSession, valid_match: pdex.MatchCall) -> None:
    """The consenting member's demographics and coverage with a Consent the payer can honour: HTTP 200, a Parameters
    with the member's identifier."""
    body = valid_match.json
    expect(valid_match.response.status_code == 200 and isinstance(body, dict)
           and body.get("resourceType") == "Parameters" and valid_match.member_identifier is not None,
           expected="HTTP 200 with a Parameters holding MemberIdentifier",
           actual=f"HTTP {valid_match.response.status_code}, {describe(body, 300)}",
           exchange=p2p_session.http.exchange_for(valid_match.response))


@pytest.mark.requirement("PDEX-P2P-03")
@proves(Fault.MEMBER_MATCH_IGNORES_DEMOGRAPHICS)
def test_member_match_demographics_mismatch(p2p_session: BackendSession, p2p_token: str, valid_match: pdex.MatchCall,
                                            member_match: MemberMatch) -> None:
    """The consenting member's coverage with another birth date and family name: 422, no identifier."""
    pdex.require_control(valid_match, "other demographics")
    call = member_match(p2p_token, patient={"birthDate": "1901-01-01", "name": [{"family": "Nomember",
                                                                                   "given": ["Zed"]}]})
    _refused(call, "demographics that do not match", "PDEX-P2P-03", p2p_session)


@pytest.mark.requirement("PDEX-P2P-04")
@proves(Fault.CONSENT_NOT_CHECKED)
def test_member_match_consent_denied(p2p_session: BackendSession, p2p_token: str, valid_match: pdex.MatchCall,
                                     member_match: MemberMatch) -> None:
    """The valid request with a Consent whose provision denies the disclosure: 422, no identifier."""
    pdex.require_control(valid_match, "a denying Consent")
    _refused(member_match(p2p_token, permit=False), "a Consent that denies", "PDEX-P2P-04", p2p_session)


@pytest.mark.requirement("PDEX-P2P-04")
@proves(Fault.CONSENT_PERIOD_IGNORED)
def test_member_match_consent_expired(p2p_session: BackendSession, p2p_token: str, valid_match: pdex.MatchCall,
                                      member_match: MemberMatch) -> None:
    """The valid request with a Consent whose period ended a month ago: 422, no identifier."""
    pdex.require_control(valid_match, "an expired Consent")
    _refused(member_match(p2p_token, start=-400, end=-30), "an expired Consent", "PDEX-P2P-04", p2p_session)


@pytest.mark.requirement("PDEX-P2P-04")
@proves(Fault.CONSENT_RECIPIENT_NOT_CHECKED)
def test_member_match_consent_for_another_payer(p2p_session: BackendSession, p2p_token: str, valid_match: pdex.MatchCall,
                                                member_match: MemberMatch, payer_to_payer: PayerToPayer) -> None:
    """The valid request with a Consent that names another payer as the recipient: 422, no identifier."""
    if payer_to_payer.other_payer is None:
        not_applicable("no payer_to_payer.other_payer configured (another payer's identifier)")
    pdex.require_control(valid_match, "a Consent for another payer")
    _refused(member_match(p2p_token, recipient=payer_to_payer.other_payer), "a Consent for another payer",
             "PDEX-P2P-04", p2p_session)


@pytest.mark.requirement("PDEX-P2P-04")
@proves(Fault.CONSENT_POLICY_IGNORED)
def test_member_match_consent_policy_unacceptable(p2p_session: BackendSession, p2p_token: str, valid_match: pdex.MatchCall,
                                                  member_match: MemberMatch, payer_to_payer: PayerToPayer) -> None:
    """The valid request with a Consent policy the payer cannot honour (payer_to_payer.unacceptable_policy): 422,
    no identifier."""
    if payer_to_payer.unacceptable_policy is None:
        not_applicable("no payer_to_payer.unacceptable_policy configured (a policy this payer cannot honour)")
    pdex.require_control(valid_match, "a Consent policy the payer cannot honour")
    _refused(member_match(p2p_token, policy=payer_to_payer.unacceptable_policy),
             f"Consent policy {payer_to_payer.unacceptable_policy}", "PDEX-P2P-04", p2p_session)


@pytest.mark.requirement("PDEX-P2P-01")
@proves(Fault.MEMBER_MATCH_WITHOUT_TOKEN)
def test_member_match_requires_token(p2p_session: BackendSession, valid_match: pdex.MatchCall,
                                     member_match: MemberMatch) -> None:
    """The valid request without Authorization: 401, no identifier."""
    pdex.require_control(valid_match, "a request without a token")
    call = member_match(None)
    expect(call.response.status_code == 401 and call.member_identifier is None,
           expected="HTTP 401 without a token, and no member identifier",
           actual=f"HTTP {call.response.status_code}, identifier {describe(call.member_identifier, 120)}",
           exchange=p2p_session.http.exchange_for(call.response))


@pytest.mark.requirement("PDEX-P2P-01")
@proves(Fault.MEMBER_MATCH_SCOPE_NOT_CHECKED)
def test_member_match_wrong_scopes_refused(p2p_session: BackendSession, valid_match: pdex.MatchCall,
                                           member_match: MemberMatch, payer_to_payer: PayerToPayer) -> None:
    """The valid request with a token granted only payer_to_payer.wrong_scopes: refused (401/403), no identifier."""
    if payer_to_payer.wrong_scopes is None:
        not_applicable("no payer_to_payer.wrong_scopes configured (scopes that do not cover $member-match)")
    pdex.require_control(valid_match, "a token with the wrong scopes")
    grant = p2p_session.good(scope=payer_to_payer.wrong_scopes)
    if grant.token is None:
        not_applicable(f"the token endpoint grants no token for {payer_to_payer.wrong_scopes}: nothing to probe")
    call = member_match(grant.token)
    expect(call.response.status_code in (401, 403) and call.member_identifier is None,
           expected=f"a token for {payer_to_payer.wrong_scopes} refused (401/403), no member identifier",
           actual=f"HTTP {call.response.status_code}, identifier {describe(call.member_identifier, 120)}",
           exchange=p2p_session.http.exchange_for(call.response))


def _shape(call: pdex.MatchCall) -> dict[str, Any]:
    body = call.json
    return {"status": call.response.status_code,
            "resourceType": body.get("resourceType") if isinstance(body, dict) else None,
            "keys": sorted(body) if isinstance(body, dict) else None, "issues": _issue_codes(call)}


@pytest.mark.requirement("PDEX-P2P-05", "PDEX-P2P-03")
@proves(Fault.MEMBER_MATCH_ORACLE, Fault.MEMBER_MATCH_IGNORES_DEMOGRAPHICS)
def test_no_match_answers_indistinguishable(p2p_session: BackendSession, p2p_token: str, valid_match: pdex.MatchCall,
                                            member_match: MemberMatch, payer_to_payer: PayerToPayer) -> None:
    """Three no-matches (a made-up person; the member's coverage with other demographics; the member's
    demographics with another coverage id) give the same status, body shape and OperationOutcome codes. The answer
    times are measured for the report, not judged."""
    pdex.require_control(valid_match, "the no-match requests")
    member = payer_to_payer.members["consenting"]
    calls = {
        "a made-up person": member_match(p2p_token, member=pdex.UNKNOWN),
        "the member's coverage, other demographics": member_match(
            p2p_token, patient={"birthDate": "1901-01-01", "name": [{"family": "Nomember", "given": ["Zed"]}]}),
        "the member's demographics, another coverage id": member_match(
            p2p_token, subscriber_id=f"{member.subscriber_id}-X9"),
    }
    evidence = current_evidence()
    if evidence is not None:
        evidence.notes.append("answer times (measured, not judged): " + "; ".join(
            f"{what}: {call.response.elapsed.total_seconds() * 1000:.0f} ms" for what, call in calls.items()))
    shapes = {what: _shape(call) for what, call in calls.items()}
    first = next(iter(shapes.values()))
    with expectations() as check:
        for what, call in calls.items():
            check.expect(call.response.status_code == 422 and call.member_identifier is None,
                         expected=f"{what}: HTTP 422, no member identifier", requirement="PDEX-P2P-03",
                         actual=f"HTTP {call.response.status_code}", exchange=p2p_session.http.exchange_for(call.response))
        differ = {what: shape for what, shape in shapes.items() if shape != first}
        check.expect(not differ, expected="every no-match answer alike: status, body shape, OperationOutcome codes",
                     actual="; ".join(f"{what}: {describe(shape, 200)}" for what, shape in shapes.items()),
                     requirement="PDEX-P2P-05",
                     exchange=p2p_session.http.exchange_for(calls[next(iter(differ))].response) if differ else None)
