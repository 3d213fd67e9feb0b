"""Payer-to-Payer, single member: FHIR queries after $member-match

PDex Payer-to-Payer (single member) §Data Retrieval Methods and §Query all clinical resources individually: after a
$member-match with a Consent the payer honours, the requesting payer may retrieve the member's data by reading and
searching each resource type instead of an export, where the payer offers that method (the target declares it:
``payer_to_payer.retrieval`` lists ``queries``, ``query_searches`` the searches). §Constraining Data Based Upon
Permissions of the Requestor: those queries reach only the members matched with an honoured Consent, checked when the
data is requested. The member's id comes from the match's answer (MemberId, else a search by the MemberIdentifier,
else the target file); the not-consenting member's id only from the target file, never guessed. A refusal counts
beside its positive control: the same query shapes for the consenting member succeed with the same token.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import pytest

from smart_conformance.checks import could_not_check, describe, expectations, not_applicable
from smart_conformance.compartment import entries, foreign, is_refusal, patients_of, resources_in
from smart_conformance.config import PayerToPayer, Target
from smart_conformance.fhir import Reply, call
from smart_conformance.http import RecordingClient, current_evidence
from smart_conformance.refusals import decided
from smart_conformance.smart import pdex
from smart_conformance.testplan import Fault, Needs, needs, proves

MemberMatch = Callable[..., pdex.MatchCall]


def _offered(payer_to_payer: PayerToPayer) -> None:
    if not payer_to_payer.offers("queries"):
        not_applicable("the target's payer_to_payer.retrieval does not list queries: the payer does not offer "
                       "single-member retrieval by FHIR queries (PDex: one of three methods, each a MAY)")


def _note(text: str) -> None:
    evidence = current_evidence()
    if evidence is not None and text not in evidence.notes:
        evidence.notes.append(text)


def _queries(payer_to_payer: PayerToPayer, patient_id: str) -> list[str]:
    """Patient/{id} and every search the target declares, for one member."""
    pid = quote(patient_id, safe="")
    return [f"Patient/{pid}", *(q.replace("{patient}", pid) for q in payer_to_payer.query_searches)]


def _matched_id(http: RecordingClient, target: Target, token: str, match: pdex.MatchCall,
                payer_to_payer: PayerToPayer) -> str:
    """The matched member's Patient id as a requesting payer learns it: the answer's MemberId, else a Patient search
    by the MemberIdentifier, else (noted) the consenting member's patient_id in the target file."""
    configured = payer_to_payer.members["consenting"].patient_id
    if match.member_reference:
        found, how = match.member_reference, "the $member-match answer's MemberId"
    else:
        identifier = match.member_identifier if isinstance(match.member_identifier, dict) else {}
        value = str(identifier.get("value") or "")
        system = str(identifier.get("system") or "")
        found, how = "", ""
        if value:
            reply = call(http, "GET", f"{target.fhir_base_url}/Patient", token=token,
                         params={"identifier": f"{system}|{value}" if system else value})
            ids = {str(r.get("id")) for r in entries(reply.json()) if r.get("resourceType") == "Patient"}
            if reply.status == 200 and len(ids) == 1:
                found, how = ids.pop(), "a Patient search by the answer's MemberIdentifier"
        if not found:
            found, how = configured, "payer_to_payer.members.consenting.patient_id (the answer gave no usable id)"
    _note(f"the matched member's Patient id: {found} (from {how})")
    if configured and found != configured:
        _note(f"the match resolved to Patient/{found}, the target file names Patient/{configured}")
    return found


def _label(path: str) -> str:
    return f"GET {path}"


def _holds_member(reply: Reply, patient_id: str) -> bool:
    return any(patient_id in patients_of(r) for r in resources_in(reply))


@pytest.mark.requirement("PDEX-P2P-10")
@proves(Fault.P2P_QUERIES_REFUSED)
def test_matched_member_data_by_queries(http: RecordingClient, target: Target, p2p_token: str,
                                        valid_match: pdex.MatchCall, payer_to_payer: PayerToPayer) -> None:
    """After the valid $member-match, the requesting payer's token reads Patient/{id} of the matched member and runs
    each declared search (payer_to_payer.query_searches): each answers 200 with that member's data and no one
    else's."""
    _offered(payer_to_payer)
    pdex.require_control(valid_match, "queries for the matched member")
    pid = _matched_id(http, target, p2p_token, valid_match, payer_to_payer)
    with expectations() as check:
        for path in _queries(payer_to_payer, pid):
            reply = call(http, "GET", f"{target.fhir_base_url}/{path}", token=p2p_token)
            decided(reply.response, f"{_label(path)} for the matched member")
            others = foreign(resources_in(reply), {pid}) if reply.status == 200 else []
            check.expect(reply.status == 200 and _holds_member(reply, pid) and not others,
                         expected=f"{_label(path)}: HTTP 200 with Patient/{pid}'s data only",
                         actual=f"HTTP {reply.status} {reply.resource_type or ''}".strip()
                         + (f" with {', '.join(others[:6])}" if others else "")
                         + ("" if reply.status != 200 or _holds_member(reply, pid) else
                            f", none of Patient/{pid}'s data ({describe(reply.json(), 160)})"),
                         exchange=reply.exchange)


@pytest.mark.requirement("PDEX-P2P-11")
@proves(Fault.P2P_QUERY_CONSENT_NOT_CHECKED)
@needs(Needs.P2P_QUERIES)
def test_non_consenting_member_queries_refused(http: RecordingClient, target: Target, p2p_token: str,
                                               valid_match: pdex.MatchCall, member_match: MemberMatch,
                                               payer_to_payer: PayerToPayer) -> None:
    """The not-consenting member (after a $member-match whose Consent had expired: a match without consent must open
    nothing) stays out of the requesting payer's reach: Patient/{id} is refused (401/403/404, no resource) and each
    declared search answers a refusal or holds none of their data. The same queries for the consenting member
    succeed with the same token (the positive control)."""
    _offered(payer_to_payer)
    if "not_consenting" not in payer_to_payer.members:
        not_applicable("no payer_to_payer.members.not_consenting configured (the member's id must come from the "
                       "target file, never guessed)")
    pdex.require_control(valid_match, "refusing the not-consenting member's data")
    mine = _matched_id(http, target, p2p_token, valid_match, payer_to_payer)
    for path in _queries(payer_to_payer, mine):
        control = call(http, "GET", f"{target.fhir_base_url}/{path}", token=p2p_token)
        if control.status != 200 or not _holds_member(control, mine):
            could_not_check(f"positive control failed: {_label(path)} for the consenting member answered HTTP "
                            f"{control.status} without their data, so a refusal of the same query for another "
                            "member proves nothing (test_matched_member_data_by_queries judges it)")
    outsider = payer_to_payer.members["not_consenting"]
    attempt = member_match(p2p_token, member=outsider, start=-400, end=-30)
    _note(f"$member-match for the not-consenting member with an expired Consent: HTTP {attempt.response.status_code} "
          "(judged by test_member_match_consent_expired); it must not open the member's data")
    with expectations() as check:
        for n, path in enumerate(_queries(payer_to_payer, outsider.patient_id)):
            reply = call(http, "GET", f"{target.fhir_base_url}/{path}", token=p2p_token)
            decided(reply.response, f"{_label(path)} for the not-consenting member")
            leaked = [f"{r.get('resourceType')}/{r.get('id')}" for r in resources_in(reply)
                      if outsider.patient_id in patients_of(r)]
            if n == 0:  # the read: a refusal as the guide allows (404 hides existence), no resource
                check.expect(is_refusal(reply, target, extra=(404,)) and not resources_in(reply),
                             expected=f"{_label(path)} (not consenting) refused: HTTP 401/403/404, no resource",
                             actual=f"HTTP {reply.status} {reply.resource_type or ''}".strip(),
                             exchange=reply.exchange)
            else:  # a search: refused, or an answer with none of the member's data
                check.expect(reply.status < 500 and (reply.status >= 400 or reply.status == 200) and not leaked,
                             expected=f"{_label(path)} (not consenting): a refusal, or no data of "
                                      f"Patient/{outsider.patient_id}",
                             actual=f"HTTP {reply.status}" + (f" with {', '.join(leaked[:6])}" if leaked else ""),
                             exchange=reply.exchange)
