"""Member isolation

SMART App Launch 2.2 §Patient-specific scopes, FHIR R4 security.html §Access Control and §Access Denied, Da Vinci
HRex: a patient-level token reaches only the in-context member's data, on every access path — read by id, search by
patient or id, ``_include``/``_revinclude``, chained parameters, ``$everything`` and batch entries. A refusal of
another member's real record looks exactly like the refusal of an id that does not exist, so it reveals nothing. An
authorized representative reaches the member they represent and no-one else. Each refusal counts only next to its
positive control: the same reads and searches, made with the owning member's own token, succeed in the same run.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from smart_conformance.checks import could_not_check, expect, fail, not_applicable
from smart_conformance.compartment import (
    foreign,
    is_refusal,
    patients_of,
    reply_label,
    resources_in,
)
from smart_conformance.config import Target
from smart_conformance.fhir import FHIR_JSON, Reply, call, control
from smart_conformance.http import RecordingClient
from smart_conformance.members import MemberRecords
from smart_conformance.smart.discovery import Document
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves


def _no_foreign_data(reply: Reply, target: Target, allowed: set[str], label: str) -> None:
    """A refusal (any 4xx) or an answer holding only the allowed patients' data; never a 5xx."""
    leaked = foreign(resources_in(reply), allowed) if reply.status < 300 else []
    expect(reply.status < 500 and not leaked,
           expected=f"{label}: a refusal or only Patient/{', '.join(sorted(allowed))}'s data",
           actual=f"HTTP {reply.status}" + (f" with {', '.join(leaked[:6])}" if leaked else ""),
           exchange=reply.exchange)


def _probe(http: RecordingClient, target: Target, token: str, path: str, params: Any, allowed: set[str]) -> None:
    url = f"{target.fhir_base_url}/{path}"
    reply = call(http, "GET", url, token=token, params=params)
    query = "&".join(f"{k}={v}" for k, v in (params.items() if isinstance(params, dict) else params or []))
    _no_foreign_data(reply, target, allowed, f"GET {path}{'?' + query if query else ''}")


def _other_reads(other: MemberRecords) -> list[str]:
    paths = [f"Patient/{other.patient_id}"]
    paths += [f"{rtype}/{rid}" for rtype, ids in other.ids.items() for rid in ids[:1]]
    return paths


@pytest.mark.requirement("SMART-FHIR-05", "HREX-SEC-01", "CARIN-SEC-07")
@proves(Fault.COMPARTMENT_LEAK_READ)
def test_other_member_read_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                   other_records: MemberRecords) -> None:
    """The second member's Patient, Coverage and EOB, read by id with the first member's token, are refused."""
    other_records.vouch("refusing the second member's records to the first member")
    for path in _other_reads(other_records):
        url = f"{target.fhir_base_url}/{path}"
        reply = call(http, "GET", url, token=launch.token.access_token)
        expect(is_refusal(reply, target) and not resources_in(reply),
               expected=f"GET {path} refused (HTTP 401/403/404 as the guide allows, no resource)",
               actual=f"HTTP {reply.status} {reply.resource_type or ''}".strip(), exchange=reply.exchange)


@pytest.mark.requirement("SMART-FHIR-05", "HREX-SEC-01")
@proves(Fault.COMPARTMENT_LEAK_READ, Fault.COMPARTMENT_LEAK_SEARCH, Fault.SEARCH_UNFILTERED)
def test_named_other_patients_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                      own_records: MemberRecords) -> None:
    """Every patient the payer names in ``isolation.other_patient_ids`` is out of the member's reach: Patient/{id}
    read with the member's token is refused, and Coverage and ExplanationOfBenefit searched by ``patient={id}`` return
    none of that patient's data.

    These are members the harness has no credentials for, so it cannot learn their records itself: the ids are the
    payer's word that they exist (default: members.other's patient). The positive control is the member's own
    Patient read and Coverage/EOB searches, which succeed with the same token in the same run."""
    mine = own_records.patient_id
    others = [pid for pid in target.other_patient_ids if pid != mine]
    if not others:
        not_applicable(f"target '{target.name}' names no other patient (isolation.other_patient_ids or members.other)")
    own_records.vouch("refusing the named other patients' records to the member")
    token = launch.token.access_token
    for pid in others:
        reply = call(http, "GET", f"{target.fhir_base_url}/Patient/{pid}", token=token)
        expect(is_refusal(reply, target) and not resources_in(reply),
               expected=f"GET Patient/{pid} (isolation.other_patient_ids) refused (HTTP 401/403/404 as the guide "
                        "allows, no resource)",
               actual=f"HTTP {reply.status} {reply.resource_type or ''}".strip(), exchange=reply.exchange)
        for rtype in ("Coverage", "ExplanationOfBenefit"):
            _probe(http, target, token, rtype, {"patient": pid}, {mine})


@pytest.mark.requirement("SMART-FHIR-05", "FHIR-SEC-07")
@proves(Fault.COMPARTMENT_LEAK_SEARCH, Fault.SEARCH_UNFILTERED)
def test_other_member_search_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                     capability_statement: Document, own_records: MemberRecords,
                                     other_records: MemberRecords) -> None:
    """Searches naming the second member (patient=, beneficiary=, _id=, batch entries) return none of their data."""
    own_records.vouch("judging searches with the first member's token")
    other_records.vouch("refusing the second member's data to the first member")
    token, other, mine = launch.token.access_token, other_records.patient_id, {own_records.patient_id}
    probes: list[tuple[str, dict[str, str]]] = [
        ("ExplanationOfBenefit", {"patient": other}),
        ("ExplanationOfBenefit", {"patient": f"Patient/{other}"}),
        ("Coverage", {"patient": other}),
        ("Coverage", {"beneficiary": other}),
        ("Patient", {"_id": other}),
        ("Patient", {"_id": f"{own_records.patient_id},{other}"}),
    ]
    probes += [(rtype, {"_id": ids[0]}) for rtype, ids in other_records.ids.items() if ids]
    for path, params in probes:
        _probe(http, target, token, path, params, mine)
    if _batch_offered(capability_statement):
        _batch_probe(http, target, token, other_records, mine)


@pytest.mark.requirement("FHIR-SEC-07", "SMART-FHIR-05")
@proves(Fault.COMPARTMENT_LEAK_INCLUDE, Fault.SEARCH_UNFILTERED)
def test_other_member_include_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                      own_records: MemberRecords) -> None:
    """_include and _revinclude pull in no other member's resources (e.g. Organization?_revinclude=EOB:insurer)."""
    own_records.vouch("judging _include/_revinclude searches with the member's token")
    token, me = launch.token.access_token, own_records.patient_id
    probes: list[tuple[str, list[tuple[str, str]]]] = [
        ("Organization", [("_revinclude", "ExplanationOfBenefit:insurer")]),
        ("Organization", [("_revinclude", "ExplanationOfBenefit:provider")]),
        ("Organization", [("_revinclude", "Coverage:payor")]),
        ("ExplanationOfBenefit", [("patient", me), ("_include", "ExplanationOfBenefit:patient")]),
        ("ExplanationOfBenefit", [("patient", me), ("_include", "ExplanationOfBenefit:coverage")]),
        ("Patient", [("_id", me), ("_revinclude", "ExplanationOfBenefit:patient")]),
        ("Patient", [("_id", me), ("_revinclude", "Coverage:beneficiary")]),
    ]
    for path, params in probes:
        _probe(http, target, token, path, params, {me})


def _identifier(patient: dict[str, Any]) -> str | None:
    for ident in patient.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("value"):
            return f"{ident['system']}|{ident['value']}" if ident.get("system") else str(ident["value"])
    return None


def _family(patient: dict[str, Any]) -> str | None:
    for name in patient.get("name") or []:
        if isinstance(name, dict) and name.get("family"):
            return str(name["family"])
    return None


@pytest.mark.requirement("FHIR-SEC-07", "SMART-FHIR-05")
@proves(Fault.COMPARTMENT_LEAK_CHAINED, Fault.SEARCH_UNFILTERED)
def test_other_member_chained_search_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                             own_records: MemberRecords, other_records: MemberRecords) -> None:
    """Chained parameters naming the second member (patient.identifier=, patient.name=) find none of their data."""
    own_records.vouch("judging chained searches with the first member's token")
    other_records.vouch("refusing the second member's data to the first member")
    token, me = launch.token.access_token, own_records.patient_id
    ident, family = _identifier(other_records.patient), _family(other_records.patient)
    if ident is None and family is None:
        could_not_check(f"Patient/{other_records.patient_id} has neither identifier nor family name to chain on")
    probes: list[tuple[str, dict[str, str]]] = []
    for path, ref in (("ExplanationOfBenefit", "patient"), ("Coverage", "beneficiary")):
        if ident:
            probes.append((path, {f"{ref}.identifier": ident}))
        if family:
            probes.append((path, {f"{ref}.name": family}))
    probes.append(("ExplanationOfBenefit", {"patient:Patient._id": other_records.patient_id}))
    for path, params in probes:
        _probe(http, target, token, path, params, {me})


@pytest.mark.requirement("FHIR-SEC-07", "SMART-FHIR-05")
@proves(Fault.COMPARTMENT_LEAK_EVERYTHING)
def test_other_member_everything_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                         other_launch: LaunchResult, own_records: MemberRecords,
                                         other_records: MemberRecords) -> None:
    """Patient/{other}/$everything with the first member's token returns none of the second member's data.

    Positive control: the second member's own token runs the same $everything. A target where that is refused does
    not offer the operation (not applicable); one where it errors cannot be judged."""
    path = f"Patient/{other_records.patient_id}/$everything"
    own = control(http, target.fhir_base_url, path, other_launch.token.access_token,
                  who=f"Patient/{other_records.patient_id}'s own token")
    if not own.ok and 400 <= own.reply.status < 500:
        not_applicable(f"the second member's own token gets {own.problem} from {path}: $everything is not offered")
    if not own.ok:
        could_not_check(f"no positive control for $everything: {own.label} answered {own.problem}")
    _probe(http, target, launch.token.access_token, f"Patient/{other_records.patient_id}/$everything", None,
           {own_records.patient_id})


def _batch_offered(capability_statement: Document) -> bool:
    body = capability_statement.json if capability_statement.ok else {}
    for rest in (body.get("rest") or []) if isinstance(body, dict) else []:
        if any(isinstance(i, dict) and i.get("code") == "batch" for i in rest.get("interaction") or []):
            return True
    return False


def _batch_probe(http: RecordingClient, target: Target, token: str, other: MemberRecords, mine: set[str]) -> None:
    """Only where the CapabilityStatement offers batch: the same reads and searches as batch entries."""
    urls = [*_other_reads(other), f"ExplanationOfBenefit?patient={other.patient_id}",
            f"Coverage?beneficiary={other.patient_id}"]
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": "GET", "url": u}} for u in urls]}
    reply = call(http, "POST", target.fhir_base_url, token=token, headers={"Content-Type": FHIR_JSON},
                 content=json.dumps(bundle).encode())
    _no_foreign_data(reply, target, mine, f"POST batch of {len(urls)} reads for Patient/{other.patient_id}")


def _shape(reply: Reply, *ids: str) -> str:
    """Status, media type and body with the probed ids and volatile values blanked: what a client can compare."""
    text = reply.response.text
    for value in ids:
        text = text.replace(value, "{id}")
    text = re.sub(r'"(id|lastUpdated)"\s*:\s*"[^"]*"', r'"\1":"…"', text)
    media = reply.response.headers.get("content-type", "").split(";")[0]
    return f"HTTP {reply.status} {media} {text[:300]}"


@pytest.mark.requirement("FHIR-SEC-08")
@proves(Fault.COMPARTMENT_LEAK_READ, Fault.EXISTENCE_ORACLE)
def test_refusal_same_for_existing_and_missing(http: RecordingClient, target: Target, launch: LaunchResult,
                                               other_records: MemberRecords) -> None:
    """Another member's real record and a nonexistent id are refused alike (no existence oracle)."""
    other_records.vouch("comparing the refusal of the second member's records with a missing id")
    token, missing = launch.token.access_token, target.missing_patient_id
    pairs = [("Patient", other_records.patient_id)]
    pairs += [(rtype, ids[0]) for rtype, ids in other_records.ids.items() if ids]
    for rtype, rid in pairs:
        real = call(http, "GET", f"{target.fhir_base_url}/{rtype}/{rid}", token=token)
        fake = call(http, "GET", f"{target.fhir_base_url}/{rtype}/{missing}", token=token)
        expect(_shape(real, rid) == _shape(fake, missing),
               expected=f"GET {rtype}/<another member's id> answered like GET {rtype}/{missing}",
               actual=f"{_shape(real, rid)}  vs  {_shape(fake, missing)}", exchange=real.exchange)


@pytest.mark.requirement("PDEX-SEC-04", "SMART-FHIR-05", "HREX-SEC-01")
@proves(Fault.COMPARTMENT_LEAK_READ, Fault.COMPARTMENT_LEAK_SEARCH, Fault.REPRESENTATIVE_OVER_REACH,
        Fault.SEARCH_UNFILTERED)
def test_representative_reaches_only_represented_member(http: RecordingClient, target: Target,
                                                        representative_launch: LaunchResult, own_records: MemberRecords,
                                                        other_records: MemberRecords) -> None:
    """The representative sees the represented member's Patient, Coverage and EOB, and no other member's."""
    own_records.vouch("refusing the primary member's records to the representative")
    other_records.vouch("refusing the second member's records to the representative")
    token = representative_launch.token.access_token
    represented = target.members["representative"].patient_id
    expect(representative_launch.token.patient == represented,
           expected=f"patient {represented!r} in the representative's token (members.representative.patient_id)",
           actual=f"patient {representative_launch.token.patient!r}", exchange=None)
    for path, params in ((f"Patient/{represented}", None), ("Coverage", {"patient": represented}),
                         ("ExplanationOfBenefit", {"patient": represented})):
        reply = call(http, "GET", f"{target.fhir_base_url}/{path}", token=token, params=params)
        found = resources_in(reply)
        mine = [r for r in found if represented in patients_of(r)]
        expect(reply.status == 200 and bool(mine),
               expected=f"{reply_label('GET', str(reply.response.url), target)}: HTTP 200 with the represented "
                        "member's data", actual=f"HTTP {reply.status}, {len(mine)} of their resources",
               exchange=reply.exchange)
        _no_foreign_data(reply, target, {represented}, f"GET {path} by the representative")
    for records in (own_records, other_records):
        for path in _other_reads(records):
            reply = call(http, "GET", f"{target.fhir_base_url}/{path}", token=token)
            if not is_refusal(reply, target) or resources_in(reply):
                fail(expected=f"GET {path} (not the represented member) refused",
                     actual=f"HTTP {reply.status} {reply.resource_type or ''}".strip(), exchange=reply.exchange)
        for path, params in (("ExplanationOfBenefit", {"patient": records.patient_id}),
                             ("Coverage", {"patient": records.patient_id})):
            _probe(http, target, token, path, params, {represented})
