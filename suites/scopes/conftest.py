"""Launches and record ids shared by the scope and isolation checks: each launch is made once per target and worker.

Record ids are never hard-coded: each member's Coverage and ExplanationOfBenefit ids are learned by searching with
that member's own token, so the checks work against any payer whose test members have data. Those reads and searches
are also the positive controls of the isolation and scope refusals: a refusal of another member's record counts only
next to the same request, made with that member's own token, succeeding (fhir.control).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from smart_conformance.checks import could_not_check, not_applicable
from smart_conformance.compartment import entries, patients_of
from smart_conformance.config import Target
from smart_conformance.fhir import Control, control, require
from smart_conformance.http import RecordingClient

RECORD_TYPES = ("Coverage", "ExplanationOfBenefit")


@dataclass
class MemberRecords:
    """What one member's own token finds: their Patient resource and the ids of their claims data."""

    patient_id: str
    patient: dict[str, Any] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)
    controls: dict[str, Control] = field(default_factory=dict)  # "Patient/x", "Coverage?patient=x" → its control

    def vouch(self, verdict: str) -> None:
        """Attach these successful reads and searches to the running check as the positive control of ``verdict``."""
        require(*self.controls.values(), verdict=verdict)

    def first(self, rtype: str) -> str | None:
        found = self.ids.get(rtype) or []
        return found[0] if found else None


def records_of(http: RecordingClient, target: Target, token: str, patient_id: str) -> MemberRecords:
    """Search the member's own data with their token (the only honest way to learn real ids)."""
    records = MemberRecords(patient_id=patient_id)
    read = control(http, target.fhir_base_url, f"Patient/{patient_id}", token, who=f"Patient/{patient_id}'s own token")
    records.controls[f"Patient/{patient_id}"] = read
    if not read.ok:
        could_not_check(f"the member's own token could not read Patient/{patient_id} ({read.problem}); "
                        "isolation checks need each member's own data")
    records.patient = read.reply.json()
    for rtype in RECORD_TYPES:
        found = control(http, target.fhir_base_url, rtype, token, params={"patient": patient_id},
                        who=f"Patient/{patient_id}'s own token")
        records.controls[f"{rtype}?patient={patient_id}"] = found
        if not found.ok:
            could_not_check(f"the member's own token could not search {rtype}?patient={patient_id} "
                            f"({found.problem})")
        records.ids[rtype] = [str(r.get("id")) for r in entries(found.reply.json(), mode="match")
                              if r.get("resourceType") == rtype and patient_id in patients_of(r)]
    for rtype, ids in records.ids.items():
        for rid in ids[:1]:  # the first record of each type: read by id in the isolation probes
            records.controls[f"{rtype}/{rid}"] = control(http, target.fhir_base_url, f"{rtype}/{rid}", token,
                                                         who=f"Patient/{patient_id}'s own token")
    return records


def _token_of(result: Any, what: str) -> str:
    if result.token is None:
        could_not_check(f"the {what} launch produced no token: " + "; ".join(result.problems))
    return str(result.token.access_token)


@pytest.fixture(scope="session")
def own_records(http: RecordingClient, target: Target, launch: Any) -> MemberRecords:
    """The primary member's data, found with the shared launch's token."""
    return records_of(http, target, launch.token.access_token, launch.token.patient or target.member.patient_id)


@pytest.fixture(scope="session")
def limited_launch(launcher: Any, target: Target) -> Any:
    """The primary member's launch with the target's limited scopes (scopes.limited)."""
    scope = target.scopes.get("limited")
    if not scope:
        not_applicable(f"target '{target.name}' gives no scopes.limited")
    result = launcher.launch(scope=scope)
    _token_of(result, "limited-scope")
    return result


@pytest.fixture(scope="session")
def other_launch(launcher: Any, target: Target) -> Any:
    """The second member's own full-scope launch (members.other): only used to learn their real record ids."""
    if "other" not in target.members:
        not_applicable(f"target '{target.name}' names no second member (members.other)")
    result = launcher.launch(member="other")
    _token_of(result, "second member's")
    return result


@pytest.fixture(scope="session")
def other_records(http: RecordingClient, target: Target, other_launch: Any) -> MemberRecords:
    patient = other_launch.token.patient or target.members["other"].patient_id
    if patient == target.member.patient_id:
        could_not_check("members.primary and members.other are the same patient; isolation needs two members")
    records = records_of(http, target, other_launch.token.access_token, patient)
    if not any(records.ids.values()):
        could_not_check(f"the second member (Patient/{patient}) has no Coverage or ExplanationOfBenefit to "
                        "probe isolation with; give members.other a member with claims")
    return records


@pytest.fixture(scope="session")
def representative_launch(launcher: Any, target: Target) -> Any:
    """The representative's launch (members.representative) with scopes.representative (or full)."""
    if "representative" not in target.members:
        not_applicable(f"target '{target.name}' names no authorized representative (members.representative)")
    result = launcher.launch(member="representative",
                             scope=target.scopes.get("representative") or target.scopes["full"])
    _token_of(result, "representative's")
    return result
