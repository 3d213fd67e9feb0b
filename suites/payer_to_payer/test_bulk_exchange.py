"""Payer-to-Payer, bulk: Group/$bulk-member-match, then $davinci-data-export of the matched members

PDex Payer-to-Payer (bulk) §Bulk Member Match with Consent (§pdex-142 to §pdex-156) and §DaVinci-Data-Export
Operation (§pdex-159 to §pdex-167): each submitted member is placed on its own (MatchedMembers with a Consent the
payer can honour, ConsentConstrainedMembers without, NonMatchedMembers when unmatched), the consent-constrained Group
says nothing of why, the export of the matched Group holds only those members' data, and it covers at least the five
years before the request (42 CFR 422.121(b)(4)(ii)); older data may come too and is reported, not judged.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import allure
import pytest

from smart_conformance.checks import could_not_check, expect, expectations, not_applicable
from smart_conformance.config import PayerToPayer, Target
from smart_conformance.http import current_evidence
from smart_conformance.smart import bulk, pdex
from smart_conformance.smart.backend import BackendSession
from smart_conformance.smart.bulk import Export
from smart_conformance.testplan import Fault, production_unsafe, proves

pytestmark = production_unsafe("a $bulk-member-match starts a bulk job and creates Groups on the payer's server")


def _groups(match: pdex.SubmittedMatch) -> pdex.MatchResult:
    if match.result.problem is not None:
        could_not_check(f"$bulk-member-match gave no result Groups ({match.result.problem}); "
                        "test_bulk_match_places_each_member judges that")
    return match.result


@pytest.mark.requirement("PDEX-P2P-01", "PDEX-BULK-02")
@proves(Fault.PDEX_MATCH_WITHOUT_TOKEN)
def test_bulk_match_requires_token(p2p_session: BackendSession, bulk_match: pdex.SubmittedMatch,
                                   target: Target) -> None:
    """The same $bulk-member-match without Authorization: 401, no result Groups, no job; with the token it was
    answered (positive control)."""
    if bulk_match.result.response.status_code not in (200, 202):
        could_not_check(f"positive control failed: the match with a token gave HTTP "
                        f"{bulk_match.result.response.status_code}")
    response = p2p_session.http.post(f"{target.fhir_base_url}/Group/$bulk-member-match", json=bulk_match.body,
                                     headers={"Accept": "application/fhir+json", "Prefer": "respond-async",
                                              "Content-Type": "application/fhir+json"})
    try:
        groups = pdex.read_parameters(response.json()) if response.status_code == 200 else {}
    except ValueError:
        groups = {}
    expect(response.status_code == 401 and not groups and not response.headers.get("content-location"),
           expected="HTTP 401 without a token: no result Groups, no job",
           actual=f"HTTP {response.status_code}, {sum(map(len, groups.values()))} result Groups",
           exchange=p2p_session.http.exchange_for(response))


@pytest.mark.requirement("PDEX-P2P-06")
@proves(Fault.CONSENT_PERIOD_IGNORED)
def test_bulk_match_places_each_member(p2p_session: BackendSession, bulk_match: pdex.SubmittedMatch) -> None:
    """The consenting member (valid Consent) in MatchedMembers; the not-consenting member (a Consent that expired) in
    ConsentConstrainedMembers; a made-up person in NonMatchedMembers. Each in one Group only."""
    exchange = p2p_session.http.exchange_for(bulk_match.result.response)
    expect(bulk_match.result.problem is None, expected="result Groups (200 Parameters, or 202 and Group files)",
           actual=bulk_match.result.problem, exchange=exchange)
    wanted = {"consenting": pdex.MATCHED, "unknown": pdex.NON_MATCHED, "not_consenting": pdex.CONSENT_CONSTRAINED}
    with expectations() as check:
        for role in bulk_match.submitted:
            placed = bulk_match.placed(role)
            check.expect(placed == [wanted[role]], expected=f"the {role.replace('_', '-')} member in {wanted[role]}",
                         actual=f"in {placed or 'no Group'}", exchange=exchange)
        check.expect(bulk_match.result.matched_group_id is not None,
                     expected="a MatchedMembers Group with an id (the export runs on it)", actual="no id",
                     exchange=exchange)


_WHY = re.compile(r"expire|revok|denied|deny|polic|sensitive|consent", re.IGNORECASE)
_PDEX_EXTENSIONS = ("http://hl7.org/fhir/us/davinci-pdex/", "http://hl7.org/fhir/us/davinci-hrex/",
                    "http://hl7.org/fhir/us/davinci-atr/")


def _details(group: dict[str, Any]) -> list[str]:
    """What in a Group (outside the contained Patients the request sent) says why a consent failed."""
    found = []
    text = (group.get("text") or {}).get("div", "") if isinstance(group.get("text"), dict) else ""
    if _WHY.search(str(text)):
        found.append("narrative text")
    for n, entry in enumerate(group.get("member") or [], 1):
        for ext in (entry.get("extension") or []) if isinstance(entry, dict) else []:
            if isinstance(ext, dict) and not str(ext.get("url", "")).startswith(_PDEX_EXTENSIONS):
                found.append(f"member[{n}] extension {ext.get('url')}")
            elif isinstance(ext, dict) and _WHY.search(str({k: v for k, v in ext.items() if k != "url"})):
                found.append(f"member[{n}] extension {ext.get('url')} value")
    for n, item in enumerate(group.get("characteristic") or [], 1):
        if isinstance(item, dict) and _WHY.search(str({k: v for k, v in item.items() if k != "code"})):
            found.append(f"characteristic[{n}]")
    return found


@pytest.mark.requirement("PDEX-P2P-07")
@proves(Fault.BULK_MATCH_CONSENT_DETAILS)
def test_consent_constrained_group_without_details(p2p_session: BackendSession,
                                                   bulk_match: pdex.SubmittedMatch) -> None:
    """The ConsentConstrainedMembers Group says which members, never why: no narrative, member extension or
    characteristic that words the consent failure."""
    if "not_consenting" not in bulk_match.submitted:
        not_applicable("no payer_to_payer.members.not_consenting configured")
    groups = _groups(bulk_match).groups.get(pdex.CONSENT_CONSTRAINED, [])
    if not groups:
        not_applicable("the match returned no ConsentConstrainedMembers Group "
                       "(test_bulk_match_places_each_member judges where the member went)")
    found = [f"Group {g.get('id') or '(no id)'}: {item}" for g in groups for item in _details(g)]
    expect(not found, expected="no consent-error detail in ConsentConstrainedMembers (§pdex-154c)",
           actual="; ".join(found), exchange=p2p_session.http.exchange_for(bulk_match.result.response))


@pytest.mark.requirement("PDEX-P2P-08")
@proves(Fault.UNATTRIBUTED_MEMBER_EXPORTED, Fault.CONSENT_PERIOD_IGNORED)
def test_export_holds_only_consented_members(p2p_session: BackendSession, p2p_token: str, p2p_group_id: str,
                                             payer_to_payer: PayerToPayer, target: Target) -> None:
    """An export of the MatchedMembers Group whose patient parameter names the consenting and the not-consenting
    member: lines about the consenting member only."""
    if "not_consenting" not in payer_to_payer.members:
        not_applicable("no payer_to_payer.members.not_consenting configured")
    consenting = payer_to_payer.members["consenting"].patient_id
    outsider = payer_to_payer.members["not_consenting"].patient_id
    job = pdex.run_export(p2p_session.http, p2p_token,
                          f"{target.fhir_base_url}/Group/{p2p_group_id}/$davinci-data-export",
                          pdex.export_parameters(None, patient=[consenting, outsider]), payer_to_payer.max_wait_s)
    allure.attach(job.log(), name="export polling (measured)", attachment_type=allure.attachment_type.TEXT)
    found = bulk.exported_patients(bulk.read_export(p2p_session.http, job, p2p_token, "the Payer-to-Payer export"))
    if consenting not in found:
        could_not_check(f"positive control failed: the export holds no line about the consenting member "
                        f"Patient/{consenting}, so the absence of the other member proves nothing")
    others = sorted(pid for pid in found if pid != consenting)
    expect(not others, expected=f"only Patient/{consenting}'s data (the member matched with consent)",
           actual=f"lines about {', '.join(f'Patient/{p}' for p in others)}",
           exchange=p2p_session.http.exchange_for(found[others[0]].response) if others else None)


def _service_date(resource: dict[str, Any]) -> datetime | None:
    """When a claim's service was: billablePeriod.start, else created, else meta.lastUpdated."""
    for value in ((resource.get("billablePeriod") or {}).get("start"), resource.get("created"),
                  (resource.get("meta") or {}).get("lastUpdated")):
        if value:
            try:
                parsed = datetime.fromisoformat(str(value))
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


@pytest.mark.requirement("PDEX-P2P-09")
@proves(Fault.FIVE_YEAR_WINDOW_IGNORED)
def test_export_covers_five_years(p2p_session: BackendSession, p2p_token: str, p2p_export: Export,
                                  payer_to_payer: PayerToPayer) -> None:
    """The export of the matched member holds the record the target names as dated between one and five years ago
    (payer_to_payer.five_year_record). Claims older than five years are counted for the report: PDex lets a payer
    return them."""
    if payer_to_payer.five_year_record is None:
        not_applicable("no payer_to_payer.five_year_record configured (a record between one and five years old)")
    allure.attach(p2p_export.log(), name="export polling (measured)", attachment_type=allure.attachment_type.TEXT)
    files = bulk.read_export(p2p_session.http, p2p_export, p2p_token, "the Payer-to-Payer export")
    held = {f"{r.get('resourceType')}/{r.get('id')}" for f in files for r in f.resources}
    cutoff = datetime.now(UTC) - timedelta(days=5 * 365 + 1)
    older = sorted(f"{r.get('resourceType')}/{r.get('id')}" for f in files for r in f.resources
                   if r.get("resourceType") == "ExplanationOfBenefit" and (_service_date(r) or cutoff) < cutoff)
    evidence = current_evidence()
    if evidence is not None and older:
        evidence.notes.append(f"claims older than five years in the export (allowed, §pdex-130): {', '.join(older)}")
    expect(payer_to_payer.five_year_record in held,
           expected=f"{payer_to_payer.five_year_record} (within the five-year window) in the export",
           actual=f"{len(held)} resources without it", detail=p2p_export.log(), exchange=p2p_export.manifest_exchange)
