"""Payer data (CARIN Blue Button core)

CARIN IG for Blue Button STU2 §Conformance and the c4bb CapabilityStatement, with FHIR R4 search: with the member's
token, ExplanationOfBenefit and Coverage searches by the launch's patient return that member's resources and nothing
else, page by page; every resource is valid FHIR R4; and each claim names the member as patient, an insurer that
resolves to an Organization, and an outcome. A server chooses its page size (FHIR R4 http.html §Paging), so the
member's searches are judged over every page their next links lead to, never by the first page alone. "Not
applicable" only ever means the member's search succeeded and found nothing; a search that failed is a failure of its
own check and makes the checks built on it could-not-check.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from smart_conformance.checks import could_not_check, expect, fail, not_applicable
from smart_conformance.compartment import entries, foreign, patients_of, ref_id
from smart_conformance.config import Target
from smart_conformance.fhir import Reply, call
from smart_conformance.http import RecordingClient
from smart_conformance.members import MAX_PAGES, MemberData, Pages, is_searchset, next_link
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves
from smart_conformance.validation import FHIR_RELEASE, problems

SEARCH_CHECKS = {"ExplanationOfBenefit": "test_eob_search_returns_member_claims_only",
                 "Coverage": "test_coverage_search_returns_member_coverage_only"}


def _matches(reply: Reply, rtype: str, label: str, requirement: str | None = None) -> list[dict[str, Any]]:
    expect(is_searchset(reply), expected=f"{label}: HTTP 200 with a searchset Bundle",
           actual=f"HTTP {reply.status} {reply.resource_type}", requirement=requirement, exchange=reply.exchange)
    found = entries(reply.json(), mode="match")
    others = [f"{r.get('resourceType')}/{r.get('id')}" for r in found if r.get("resourceType") != rtype]
    expect(not others, expected=f"{label}: only {rtype} as search matches", actual=", ".join(others[:5]),
           requirement=requirement, exchange=reply.exchange)
    return found


def _searched(data: MemberData, rtype: str, check: str) -> Pages:
    """The member's own search, for a check built on it: could-not-check (never n/a) when the search failed."""
    reply = data.searches[rtype].first
    if not is_searchset(reply):
        could_not_check(f"the member's own {rtype}?patient={data.patient_id} search failed (HTTP {reply.status} "
                        f"{reply.resource_type or ''}); {check} needs it (judged by "
                        f"{SEARCH_CHECKS.get(rtype, 'the search check')})")
    return data.searches[rtype]


def _each_match(pages: Pages) -> list[tuple[dict[str, Any], Reply]]:
    """Every match of every page, with the reply it came in (for evidence)."""
    return [(r, reply) for reply in pages.replies for r in entries(reply.json(), mode="match")]


def _member_only(data: MemberData, rtype: str, element: str) -> None:
    pages = data.searches[rtype]
    label = f"GET {rtype}?patient={data.patient_id}"
    for n, reply in enumerate(pages.replies, 1):  # a page that failed fails the check: it is part of the search
        _matches(reply, rtype, label if n == 1 else f"{label}, page {n} (by its next link)")
    found = _each_match(pages)
    if not found:
        not_applicable(f"the member's {rtype} search succeeded and found none (give members.primary a member with "
                       "claims data)")
    wrong = [(f"{rtype}/{r.get('id')} {element}={patients_of(r) or '(none)'}", reply) for r, reply in found
             if patients_of(r) != {data.patient_id}]
    expect(not wrong, expected=f"{label}, every page: every {rtype}.{element} is Patient/{data.patient_id}",
           actual="; ".join(w for w, _ in wrong[:5]), exchange=(wrong[0][1] if wrong else pages.first).exchange)


@pytest.mark.requirement("CARIN-DATA-01", "SMART-FHIR-05")
@proves(Fault.SEARCH_UNFILTERED)
def test_eob_search_returns_member_claims_only(member_data: MemberData) -> None:
    """ExplanationOfBenefit?patient={launch patient} returns only that member's claims."""
    _member_only(member_data, "ExplanationOfBenefit", "patient")


@pytest.mark.requirement("CARIN-DATA-02", "SMART-FHIR-05")
@proves(Fault.SEARCH_UNFILTERED)
def test_coverage_search_returns_member_coverage_only(member_data: MemberData) -> None:
    """Coverage?patient={launch patient} returns only Coverage whose beneficiary is that member."""
    _member_only(member_data, "Coverage", "beneficiary")


@pytest.mark.requirement("FHIR-HTTP-03", "SMART-FHIR-05")
@proves(Fault.PAGING_LEAKS_OTHER_MEMBERS, Fault.SEARCH_UNFILTERED)
def test_search_paging_consistent(http: RecordingClient, target: Target, launch: LaunchResult,
                                  member_data: MemberData) -> None:
    """_count=1 pages through the member's claims by next links: no duplicates, total agrees, no leaks, and the same
    claims as their default search. That baseline is itself followed to its last page (a server may page by default),
    or, where it could not be, taken from its total."""
    default = _searched(member_data, "ExplanationOfBenefit", "paging through the member's claims")
    unpaged: set[str] | None = {str(r.get("id")) for r in default.matches()} if default.complete else None
    claims = len(unpaged) if unpaged is not None else default.first.json().get("total")
    if not isinstance(claims, int):
        could_not_check(f"the member's default claims search could not be followed to its end ({default.stopped}) "
                        "and gives no total: there is no baseline for the paged result")
    if claims < 2:
        not_applicable(f"the member has {claims} ExplanationOfBenefit; paging needs at least 2")
    origin = urlsplit(target.fhir_base_url)
    url: str | None = f"{target.fhir_base_url}/ExplanationOfBenefit"
    params: dict[str, str] | None = {"patient": member_data.patient_id, "_count": "1"}
    seen: list[str] = []
    total: Any = None
    first: Any = None
    for page in range(MAX_PAGES):
        reply = call(http, "GET", url or "", token=launch.token.access_token, params=params)
        found = _matches(reply, "ExplanationOfBenefit", f"page {page + 1} of the member's claims", "FHIR-HTTP-03")
        leaked = foreign(found, {member_data.patient_id})
        expect(not leaked, expected=f"page {page + 1}: only Patient/{member_data.patient_id}'s claims",
               actual=", ".join(leaked[:5]), requirement="SMART-FHIR-05", exchange=reply.exchange)
        expect(len(found) <= 1, expected="at most 1 match per page with _count=1", actual=f"{len(found)} matches",
               requirement="FHIR-HTTP-03", exchange=reply.exchange)
        if page == 0:
            first = reply.exchange  # the search the pages come from: the evidence of what they hold together
            total = reply.json().get("total")
            if next_link(reply.json()) is None:
                fail(expected="a next link on the first page (_count=1, several matches)", actual="no next link",
                     requirement="FHIR-HTTP-03", exchange=reply.exchange)
        seen += [str(r.get("id")) for r in found]
        url, params = next_link(reply.json()), None
        if url is None:
            break
        parts = urlsplit(url)
        expect(parts.scheme == origin.scheme and parts.netloc == origin.netloc,
               expected=f"next link on the FHIR server's own origin ({origin.scheme}://{origin.netloc})",
               actual=url, requirement="FHIR-HTTP-03", exchange=reply.exchange)
    else:
        fail(expected=f"the last page within {MAX_PAGES} pages", actual="next links kept coming",
             requirement="FHIR-HTTP-03", exchange=reply.exchange)
    dupes = sorted({i for i in seen if seen.count(i) > 1})
    expect(not dupes, expected="each claim on exactly one page", actual=f"repeated: {', '.join(dupes)}",
           requirement="FHIR-HTTP-03", exchange=first)
    same = set(seen) == unpaged if unpaged is not None else len(set(seen)) == claims
    expect(same and (total is None or total == len(seen)),
           expected=f"the pages hold the member's whole result ({claims} claims over every page of their default "
                    f"search{'' if unpaged is not None else ', by its total'}; total {total})",
           actual=f"{len(seen)} claims over the pages: {', '.join(sorted(set(seen))[:8])}",
           requirement="FHIR-HTTP-03", exchange=first)


@pytest.mark.requirement("SAFETY-10")
@proves(Fault.INVALID_FHIR_DATES)
def test_member_resources_valid_fhir(member_data: MemberData) -> None:
    """The member's Patient, Coverage and ExplanationOfBenefit resources are structurally valid FHIR R4."""
    checked: list[tuple[dict[str, Any], Reply]] = []
    patient = member_data.patient
    if patient.status != 200 or patient.resource_type != "Patient":
        could_not_check(f"the member's own Patient/{member_data.patient_id} read answered HTTP {patient.status}: "
                        "it cannot be validated")
    checked.append((patient.json(), patient))
    for rtype in member_data.searches:
        pages = _searched(member_data, rtype, "validating the member's resources")
        checked += [(r, reply) for reply in pages.replies for r in entries(reply.json())]
    for resource, reply in checked:
        found = problems(resource)
        expect(not found, expected=f"{resource.get('resourceType')}/{resource.get('id')} valid against the FHIR "
                                   f"{FHIR_RELEASE}", actual="; ".join(found), requirement="SAFETY-10",
               exchange=reply.exchange)


@pytest.mark.requirement("CARIN-DATA-03")
@proves(Fault.EOB_INSURER_UNRESOLVABLE, Fault.SEARCH_UNFILTERED)
def test_eob_carin_must_haves(http: RecordingClient, target: Target, launch: LaunchResult,
                              member_data: MemberData) -> None:
    """Each claim has patient = the member, an insurer that resolves to an Organization, and an outcome."""
    pages = _searched(member_data, "ExplanationOfBenefit", "checking each claim's CARIN elements")
    claims = [(r, reply) for r, reply in _each_match(pages) if r.get("resourceType") == "ExplanationOfBenefit"]
    if not claims:
        not_applicable("the member's ExplanationOfBenefit search succeeded and found no claims (give members.primary "
                       "a member with claims data)")
    resolved: dict[str, Reply] = {}
    for eob, reply in claims:
        name = f"ExplanationOfBenefit/{eob.get('id')}"
        patient = ref_id((eob.get("patient") or {}).get("reference"), "Patient")
        expect(patient == member_data.patient_id, expected=f"{name}.patient = Patient/{member_data.patient_id}",
               actual=f"patient {eob.get('patient')!r}", exchange=reply.exchange)
        expect(isinstance(eob.get("outcome"), str) and bool(eob["outcome"]), expected=f"{name}.outcome present",
               actual=f"outcome {eob.get('outcome')!r}", exchange=reply.exchange)
        insurer = (eob.get("insurer") or {}).get("reference")
        if not isinstance(insurer, str) or not insurer:
            fail(expected=f"{name}.insurer a reference to an Organization", actual=f"insurer {eob.get('insurer')!r}",
                 exchange=reply.exchange)
        url = insurer if insurer.startswith(("http://", "https://")) else f"{target.fhir_base_url}/{insurer}"
        if url not in resolved:
            resolved[url] = call(http, "GET", url, token=launch.token.access_token)
        got = resolved[url]
        expect(got.status == 200 and got.resource_type == "Organization",
               expected=f"{name}.insurer ({insurer}) resolves to an Organization",
               actual=f"HTTP {got.status} {got.resource_type or ''}".strip(), exchange=got.exchange)
