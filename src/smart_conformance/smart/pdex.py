"""The client side of the CMS-0057 payer APIs (Da Vinci PDex Provider Access and Payer-to-Payer, HRex $member-match):
the Parameters a match sends, and reading the three result Groups however they come back (whose data an export
holds is read by smart/bulk.py).

Requests carry only the target file's test members (``config.PayerMember``), never guessed people, and every
Consent the harness sends is built here with one change at a time from a valid one, so a refusal is attributable to
that change. A match's result Groups come back either inline (200 Parameters, the PDex STU 2.1 shape) or through the
asynchronous pattern (202, status polling, Group NDJSON files: STU 2.2); both are read the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from smart_conformance.config import PayerMember
from smart_conformance.http import RecordingClient
from smart_conformance.smart.bulk import Export, bearer, kickoff, ndjson_lines, poll

MATCHED, NON_MATCHED, CONSENT_CONSTRAINED = "MatchedMembers", "NonMatchedMembers", "ConsentConstrainedMembers"
CATEGORIES = (MATCHED, NON_MATCHED, CONSENT_CONSTRAINED)
# The result-Group codes PDex uses, for Groups delivered as NDJSON without a parameter name.
_CODES = {"match": MATCHED, "matched": MATCHED, "nomatch": NON_MATCHED, "nonmatch": NON_MATCHED,
          "consentconstraint": CONSENT_CONSTRAINED, "consentconstrained": CONSENT_CONSTRAINED}
IRCP = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}
MEMBER_ID_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MB"}]}
# A person the harness makes up: no payer should hold this member.
UNKNOWN = PayerMember(patient_id="", family="Nomember", given="Zed", birth_date="1901-01-01", gender="other",
                      subscriber_id="SMART-CONFORMANCE-NO-SUCH-MEMBER")


# --- what a match sends -------------------------------------------------------------------------------------------
def patient(member: PayerMember, local_id: str, **changes: Any) -> dict[str, Any]:
    """HRex Patient Demographics for the member, under a request-local id the result Groups can be read by."""
    resource = {"resourceType": "Patient", "id": local_id, "name": [{"family": member.family, "given": [member.given]}],
                "birthDate": member.birth_date, "gender": member.gender}
    resource.update(changes)
    return resource


def coverage(member: PayerMember, local_id: str, subscriber_id: str | None = None) -> dict[str, Any]:
    """HRex Coverage to match: the member's coverage as the card shows it."""
    sub = member.subscriber_id if subscriber_id is None else subscriber_id
    return {"resourceType": "Coverage", "id": f"{local_id}-coverage", "status": "active", "subscriberId": sub,
            "identifier": [{"type": MEMBER_ID_TYPE, "value": sub}],
            "beneficiary": {"reference": f"Patient/{local_id}"}, "payor": [{"display": "prior or current health plan"}]}


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).date().isoformat()


def hrex_consent(local_id: str, policy: str, recipient: Mapping[str, str], *, permit: bool = True,
                 start: int = -30, end: int = 90) -> dict[str, Any]:
    """HRex Consent: the member asks the data holder to disclose to the requesting payer (the IRCP actor), under
    ``policy``, for the days ``start``..``end`` around today."""
    return {"resourceType": "Consent", "id": f"{local_id}-consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IDSCL"}]}],
            "patient": {"reference": f"Patient/{local_id}"}, "performer": [{"reference": f"Patient/{local_id}"}],
            "dateTime": day(0), "policy": [{"uri": policy}],
            "provision": {"type": "permit" if permit else "deny", "period": {"start": day(start), "end": day(end)},
                          "actor": [{"role": IRCP, "reference": {"identifier": dict(recipient)}}],
                          "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                                  "code": "disclose"}]}]}}


def treatment_attestation(local_id: str) -> dict[str, Any]:
    """PDex Provider Treatment Attestation (a Consent): the provider attests a treatment relationship."""
    return {"resourceType": "Consent", "id": f"{local_id}-attestation", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{local_id}"}, "dateTime": day(0),
            "provision": {"type": "permit", "period": {"start": day(0)}}}


def member_bundle(parts: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    return {"name": "MemberBundle", "part": [{"name": name, "resource": res} for name, res in parts.items()]}


def parameters(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(items)}


# --- reading the result Groups ----------------------------------------------------------------------------------
def _category(group: dict[str, Any], name: str | None) -> str | None:
    if name in CATEGORIES:
        return name
    for coding in (group.get("code") or {}).get("coding") or []:
        code = str(coding.get("code", "")).lower().replace("-", "").replace("_", "") if isinstance(coding, dict) else ""
        if code in _CODES:
            return _CODES[code]
    return None


@dataclass
class MatchResult:
    """One multi-member match as the client saw it: the answer (and the job, if asynchronous) and its Groups."""

    response: httpx.Response
    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # category -> Groups
    job: Export | None = None
    problem: str | None = None  # why the Groups could not be read

    def category_of(self, local_id: str, patient_id: str | None = None) -> list[str]:
        """The categories whose Groups hold the submitted member: its request-local id contained or referenced, or
        (matched) a reference to its Patient id at the payer."""
        found = []
        for category, groups in self.groups.items():
            for group in groups:
                if holds(group, local_id, patient_id):
                    found.append(category)
                    break
        return found

    @property
    def matched_group_id(self) -> str | None:
        for group in self.groups.get(MATCHED, []):
            if isinstance(group.get("id"), str) and group["id"]:
                return str(group["id"])
        return None

    def all_groups(self) -> list[tuple[str, dict[str, Any]]]:
        return [(c, g) for c, groups in self.groups.items() for g in groups]


def holds(group: dict[str, Any], local_id: str, patient_id: str | None) -> bool:
    contained_ids = {str(r.get("id")) for r in group.get("contained") or [] if isinstance(r, dict)}
    refs = set()
    for entry in group.get("member") or []:
        if isinstance(entry, dict):
            refs.add(str((entry.get("entity") or {}).get("reference", "")))
            refs |= {str((e.get("valueReference") or {}).get("reference", "")) for e in
                     (entry.get("entity") or {}).get("extension") or entry.get("extension") or [] if isinstance(e, dict)}
    wanted = {f"#{local_id}"} | ({f"Patient/{patient_id}"} if patient_id else set())
    return bool(refs & wanted) or local_id in contained_ids


def read_parameters(body: Any) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for param in (body.get("parameter") or []) if isinstance(body, dict) else []:
        resource = param.get("resource") if isinstance(param, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "Group":
            category = _category(resource, param.get("name"))
            if category:
                groups.setdefault(category, []).append(resource)
    return groups


def run_match(http: RecordingClient, url: str, token: str | None, body: dict[str, Any], max_wait: float) -> MatchResult:
    """POST a multi-member match with Prefer: respond-async; read its Groups inline (200) or from the finished job's
    NDJSON files (202, polled within ``max_wait``)."""
    job = kickoff(http, url, token, body=body)
    response = job.kickoff
    result = MatchResult(response)
    if response.status_code == 200:
        try:
            result.groups = read_parameters(response.json())
        except ValueError:
            result.problem = "the 200 answer is not JSON"
        return result
    if response.status_code != 202:
        result.problem = f"HTTP {response.status_code}"
        return result
    result.job = poll(http, job, token, max_wait)
    manifest = result.job.manifest
    if manifest is None:
        result.problem = f"no manifest within the bounded wait:\n{result.job.log()}"
        return result
    for item in manifest.get("output") or []:
        if not isinstance(item, dict) or not str(item.get("url", "")).startswith("https://"):
            continue
        token_for_file = token if manifest.get("requiresAccessToken", True) else None
        got = http.get(item["url"], headers={"Accept": "application/fhir+ndjson", **bearer(token_for_file)})
        for line in ndjson_lines(got.text) if got.status_code == 200 else []:
            try:
                resource = json.loads(line)
            except ValueError:
                continue
            if isinstance(resource, dict) and resource.get("resourceType") == "Group":
                category = _category(resource, None)
                if category:
                    result.groups.setdefault(category, []).append(resource)
            elif isinstance(resource, dict) and resource.get("resourceType") == "Parameters" and not result.groups:
                result.groups = read_parameters(resource)
    return result


# --- whose data an export holds ---------------------------------------------------------------------------------
def advertised_operations(statement: Any) -> set[str]:
    """Operation names the CapabilityStatement lists (at rest level or on any resource), by name and by the last
    segment of their definition URL."""
    names: set[str] = set()
    for rest in (statement.get("rest") or []) if isinstance(statement, dict) else []:
        if not isinstance(rest, dict):
            continue
        resources = rest.get("resource")
        places = [rest] + [r for r in resources if isinstance(r, dict)] if isinstance(resources, list) else [rest]
        for place in places:
            operations = place.get("operation")
            for op in operations if isinstance(operations, list) else []:
                if isinstance(op, dict):
                    names.add(str(op.get("name", "")).lstrip("$"))
                    names.add(str(op.get("definition", "")).split("|")[0].rstrip("/").rsplit("/", 1)[-1])
    return names


# --- a match as the suites run it --------------------------------------------------------------------------------
# The request-local ids the harness gives each submitted member role, so the result Groups can be read by role.
LOCAL = {"attributed": "sc-attributed", "opted_out": "sc-opted-out", "not_attributed": "sc-not-attributed",
         "unknown": "sc-unknown", "consenting": "sc-consenting", "not_consenting": "sc-not-consenting"}
DOWNLOAD = "hl7.fhir.us.davinci-pdex#provider-download"


@dataclass
class SubmittedMatch:
    """One multi-member match of the run: who was submitted in which role, the request, and the result."""

    submitted: dict[str, PayerMember]  # role -> member
    body: dict[str, Any]
    result: MatchResult

    def placed(self, role: str) -> list[str]:
        return self.result.category_of(LOCAL[role], self.submitted[role].patient_id or None)


def provider_match_body(submitted: Mapping[str, PayerMember]) -> dict[str, Any]:
    """One MemberBundle per member: HRex demographics, the coverage to match, the provider's treatment attestation."""
    return parameters(member_bundle({"MemberPatient": patient(m, LOCAL[role]),
                                     "CoverageToMatch": coverage(m, LOCAL[role]),
                                     "Consent": treatment_attestation(LOCAL[role])})
                      for role, m in submitted.items())


def export_parameters(export_type: str | None = DOWNLOAD, **params: str | list[str]) -> dict[str, Any]:
    """The $davinci-data-export Parameters: exportType (None: left out), and _type / _since / patient as given."""
    items: list[dict[str, Any]] = [{"name": "exportType", "valueString": export_type}] if export_type else []
    for name, value in params.items():
        for one in value if isinstance(value, list) else [value]:
            if name == "patient":
                items.append({"name": "patient", "valueReference": {"reference": f"Patient/{one}"}})
            elif name == "_since":
                items.append({"name": "_since", "valueInstant": one})
            else:
                items.append({"name": name, "valueString": one})
    return parameters(items)


def run_export(http: RecordingClient, token: str | None, url: str, body: dict[str, Any], max_wait: float) -> Export:
    """POST kick-off of an export operation, polled to the end within ``max_wait``."""
    return poll(http, kickoff(http, url, token, body=body), token, max_wait)


# --- single-member $member-match ----------------------------------------------------------------------------------
@dataclass
class MatchCall:
    """One $member-match: what was sent (for the evidence) and the answer."""

    body: dict[str, Any]
    response: httpx.Response

    @property
    def json(self) -> Any:
        try:
            return self.response.json()
        except ValueError:
            return None

    @property
    def member_identifier(self) -> Any:
        """The MemberIdentifier (or MemberId) the answer gives, if any."""
        body = self.json
        for param in (body.get("parameter") or []) if isinstance(body, dict) else []:
            if isinstance(param, dict) and param.get("name") in ("MemberIdentifier", "MemberId"):
                return param.get("valueIdentifier") or param.get("valueReference") or param
        return None


    @property
    def member_reference(self) -> str | None:
        """The Patient id of a MemberId reference (HRex STU 1.1 and later may return it beside MemberIdentifier)."""
        body = self.json
        for param in (body.get("parameter") or []) if isinstance(body, dict) else []:
            if isinstance(param, dict) and param.get("name") == "MemberId":
                reference = str((param.get("valueReference") or {}).get("reference", ""))
                if "Patient/" in reference:
                    return reference.rsplit("Patient/", 1)[1].split("/", 1)[0] or None
        return None


def require_control(valid: MatchCall, what: str) -> None:
    """A refusal counts only beside the valid request that matched (HTTP 200) in the same run."""
    from smart_conformance.checks import could_not_check

    if valid.response.status_code != 200:
        could_not_check(f"positive control failed: the valid $member-match gave HTTP {valid.response.status_code}, "
                        f"so the refusal of {what} proves nothing about that one change")
