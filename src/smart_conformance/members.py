"""What a member's own token finds, typed, for the checks that judge a member's data or refuse it to others.

Record ids are never hard-coded: each member's Coverage and ExplanationOfBenefit ids are learned by searching with
that member's own token, so the checks work against any payer whose test members have data. Those reads and searches
are also the positive controls of the isolation and scope refusals: a refusal of another member's record counts only
next to the same request, made with that member's own token, succeeding (:func:`smart_conformance.fhir.control`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smart_conformance.checks import could_not_check
from smart_conformance.compartment import entries, patients_of
from smart_conformance.config import Target
from smart_conformance.fhir import Control, Reply, control, require
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


@dataclass(frozen=True)
class MemberData:
    """The launch's patient and the first page of each of their searches (the reply, for evidence)."""

    patient_id: str
    patient: Reply
    searches: dict[str, Reply]


@dataclass(frozen=True)
class MemberResources:
    """The launch's patient, their Patient read and the first page of their Coverage and claims searches."""

    patient_id: str
    replies: dict[str, Reply]

    def resources(self) -> list[tuple[dict[str, Any], Reply]]:
        """Every resource the member's token got back, with the reply it came in (for evidence)."""
        found: list[tuple[dict[str, Any], Reply]] = []
        for reply in self.replies.values():
            body = reply.json()
            if reply.status != 200 or not isinstance(body, dict):
                continue
            found += [(r, reply) for r in (entries(body) if body.get("resourceType") == "Bundle" else [body])]
        return found
