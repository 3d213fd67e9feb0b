"""Provider Access v2: Group/$provider-member-match, the provider's attestation of its patients

PDex Provider Access v2 §How does Provider Access Work (§pdex-250 to §pdex-267): the provider's backend client submits
each patient's demographics, coverage and a treatment attestation; the payer returns MatchedMembers (matched, treatment
relationship, not opted out; the Group the provider exports), ConsentConstrainedMembers (opted out; or, to keep
opt-out private, among the non-matched) and NonMatchedMembers (unknown, or no treatment relationship). The Groups
carry the submitted Patients as the request had them, nothing of the payer's record. Access needs SMART client
credentials (§pdex-282, §pdex-317).
"""

from __future__ import annotations

from typing import Any

import pytest

from smart_conformance.checks import could_not_check, describe, expect, expectations, not_applicable
from smart_conformance.config import ProviderAccess, Target
from smart_conformance.smart import pdex
from smart_conformance.smart.backend import BackendSession
from smart_conformance.smart.discovery import Document
from smart_conformance.testplan import Fault, Needs, needs, production_unsafe, proves

PA_OPERATIONS = ("provider-member-match", "davinci-data-export")


def _result(match: pdex.SubmittedMatch) -> pdex.MatchResult:
    if match.result.problem is not None:
        could_not_check(f"$provider-member-match gave no result Groups ({match.result.problem}); "
                        "test_attributed_member_matched judges that")
    return match.result


def _role(match: pdex.SubmittedMatch, role: str) -> None:
    if role not in match.submitted:
        not_applicable(f"no provider_access.members.{role} configured")


@pytest.mark.requirement("PDEX-PA-14")
@proves(Fault.PDEX_OPERATIONS_NOT_ADVERTISED)
@needs(Needs.CAPABILITY_STATEMENT)
def test_provider_access_operations_advertised(provider_access: ProviderAccess, capability_statement: Document) -> None:
    """The CapabilityStatement lists $provider-member-match and $davinci-data-export."""
    if not capability_statement.ok:
        could_not_check(f"the CapabilityStatement could not be read (HTTP {capability_statement.status})")
    found = pdex.advertised_operations(capability_statement.json)
    missing = [op for op in PA_OPERATIONS if op not in found]
    expect(not missing, expected=f"CapabilityStatement operations {', '.join(PA_OPERATIONS)}",
           actual=f"missing {', '.join(missing)}; listed: {', '.join(sorted(found - {''})) or 'none'}",
           exchange=capability_statement.exchange)


@pytest.mark.requirement("PDEX-PA-01")
@proves(Fault.PDEX_MATCH_WITHOUT_TOKEN)
@production_unsafe("a $provider-member-match can create attribution Groups on the payer's server")
def test_provider_member_match_requires_token(pa_session: BackendSession, provider_match: pdex.SubmittedMatch,
                                              target: Target) -> None:
    """The same $provider-member-match without Authorization: 401 and no result Groups; with the token it was
    answered (positive control)."""
    if provider_match.result.response.status_code not in (200, 202):
        could_not_check(f"positive control failed: the match with a token gave HTTP "
                        f"{provider_match.result.response.status_code}")
    response = pa_session.http.post(f"{target.fhir_base_url}/Group/$provider-member-match", json=provider_match.body,
                                    headers={"Accept": "application/fhir+json", "Prefer": "respond-async",
                                             "Content-Type": "application/fhir+json"})
    groups = pdex.read_parameters(_json(response)) if response.status_code == 200 else {}
    expect(response.status_code == 401 and not groups and not response.headers.get("content-location"),
           expected="HTTP 401 without a token: no result Groups, no job",
           actual=f"HTTP {response.status_code}, {sum(map(len, groups.values()))} result Groups, Content-Location "
                  f"{response.headers.get('content-location')!r}",
           exchange=pa_session.http.exchange_for(response))


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@pytest.mark.requirement("PDEX-PA-02")
@proves(Fault.MATCHED_GROUP_NOT_READABLE)
@production_unsafe("a $provider-member-match can create attribution Groups on the payer's server")
def test_attributed_member_matched(pa_session: BackendSession, pa_token: str, provider_match: pdex.SubmittedMatch,
                                   target: Target) -> None:
    """The attributed member lands in MatchedMembers, whose id the provider can read (GET Group/{id}) with the
    member in it."""
    result = provider_match.result
    exchange = pa_session.http.exchange_for(result.response)
    expect(result.problem is None, expected="the match answered with result Groups (200 Parameters, or 202 and a "
                                            "manifest of Group files)",
           actual=result.problem, exchange=exchange, detail=result.job.log() if result.job else None)
    member = provider_match.submitted["attributed"]
    placed = provider_match.placed("attributed")
    expect(placed == [pdex.MATCHED], expected="the attributed member in MatchedMembers only",
           actual=f"in {placed or 'no Group'}", exchange=exchange)
    group_id = result.matched_group_id
    expect(group_id is not None, expected="a MatchedMembers Group with an id (the provider exports it)",
           actual="no id", exchange=exchange)
    read = pa_session.http.get(f"{target.fhir_base_url}/Group/{group_id}",
                               headers={"Accept": "application/fhir+json", "Authorization": f"Bearer {pa_token}"})
    body = _json(read)
    refs = {str((m.get("entity") or {}).get("reference", "")) for m in (body or {}).get("member") or []
            if isinstance(m, dict)} if isinstance(body, dict) else set()
    expect(read.status_code == 200 and isinstance(body, dict) and body.get("resourceType") == "Group"
           and pdex.holds(body, pdex.LOCAL["attributed"], member.patient_id),
           expected=f"GET Group/{group_id}: HTTP 200, the Group with Patient/{member.patient_id}",
           actual=f"HTTP {read.status_code}, members {sorted(refs)}", exchange=pa_session.http.exchange_for(read))


@pytest.mark.requirement("PDEX-PA-03")
@proves(Fault.OPT_OUT_IGNORED)
@production_unsafe("a $provider-member-match can create attribution Groups on the payer's server")
def test_opted_out_member_not_matched(pa_session: BackendSession, provider_match: pdex.SubmittedMatch,
                                      provider_access: ProviderAccess) -> None:
    """The opted-out member is never in MatchedMembers; it is where the target says the payer returns opted-out
    members (ConsentConstrainedMembers, or NonMatchedMembers to keep opt-out private)."""
    _role(provider_match, "opted_out")
    _result(provider_match)
    placed = provider_match.placed("opted_out")
    wanted = provider_access.opted_out_in
    with expectations() as check:
        check.expect(pdex.MATCHED not in placed, expected="the opted-out member not in MatchedMembers",
                     actual=f"in {placed}", exchange=pa_session.http.exchange_for(provider_match.result.response))
        check.expect(placed == [wanted], expected=f"the opted-out member in {wanted} (provider_access.opted_out_in)",
                     actual=f"in {placed or 'no Group'}",
                     exchange=pa_session.http.exchange_for(provider_match.result.response))


@pytest.mark.requirement("PDEX-PA-04")
@proves(Fault.TREATMENT_RELATIONSHIP_NOT_CHECKED, Fault.MEMBER_MATCH_TOO_LOOSE)
@production_unsafe("a $provider-member-match can create attribution Groups on the payer's server")
def test_unknown_and_unattributed_not_matched(pa_session: BackendSession, pa_token: str, provider_match: pdex.SubmittedMatch,
                                              provider_access: ProviderAccess, target: Target) -> None:
    """A person the harness made up, a made-up person carrying the attributed member's coverage id, and (where
    configured) a member with no treatment relationship with this provider: each in NonMatchedMembers, none
    matched."""
    _result(provider_match)
    attributed = provider_access.members["attributed"]
    impostor = pdex.UNKNOWN.__class__(**{**pdex.UNKNOWN.__dict__, "subscriber_id": attributed.subscriber_id})
    near = pdex.run_match(pa_session.http, f"{target.fhir_base_url}/Group/$provider-member-match", pa_token,
                          pdex.provider_match_body({"unknown": impostor}), provider_access.max_wait_s)
    if near.problem is not None:
        could_not_check(f"the second $provider-member-match gave no result Groups ({near.problem})")
    with expectations() as check:
        for role, result in (("unknown", provider_match.result), ("unknown", near),
                             *([("not_attributed", provider_match.result)]
                               if "not_attributed" in provider_match.submitted else [])):
            placed = result.category_of(pdex.LOCAL[role], provider_match.submitted[role].patient_id or None)
            who = ("a made-up person with the attributed member's coverage id" if result is near
                   else "a made-up person" if role == "unknown" else "the member with no treatment relationship")
            check.expect(placed == [pdex.NON_MATCHED], expected=f"{who} in NonMatchedMembers only",
                         actual=f"in {placed or 'no Group'}", exchange=pa_session.http.exchange_for(result.response))


_PAYER_ONLY = ("telecom", "address", "identifier", "maritalStatus", "contact", "generalPractitioner")


@pytest.mark.requirement("PDEX-PA-05")
@proves(Fault.MEMBER_MATCH_ECHOES_RECORD)
@production_unsafe("a $provider-member-match can create attribution Groups on the payer's server")
def test_groups_echo_only_submitted_data(pa_session: BackendSession, provider_match: pdex.SubmittedMatch) -> None:
    """Every Patient contained in a result Group carries no element and no value the request did not carry (the
    payer's address, phone or identifiers are not disclosed by a match)."""
    result = _result(provider_match)
    sent = {str(p["resource"].get("id")): p["resource"] for b in provider_match.body["parameter"]
            for p in b["part"] if p["name"] == "MemberPatient"}
    problems = []
    for category, group in result.all_groups():
        for resource in group.get("contained") or []:
            if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
                continue
            original = sent.get(str(resource.get("id")))
            extra = sorted(k for k in resource if k not in ("resourceType", "id", "meta")
                           and (original is None or resource[k] != original.get(k)))
            if extra:
                problems.append(f"{category} contained Patient {resource.get('id')}: {', '.join(extra)} "
                                f"({describe({k: resource[k] for k in extra}, 200)})")
    if not any(isinstance(r, dict) and r.get("resourceType") == "Patient" for _c, g in result.all_groups()
               for r in g.get("contained") or []):
        not_applicable("the result Groups contain no Patient resource to compare with the request")
    expect(not problems, expected="contained Patients exactly as submitted (§pdex-151: not modified or added to)",
           actual="; ".join(problems), exchange=pa_session.http.exchange_for(result.response))
