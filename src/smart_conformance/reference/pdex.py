"""The CMS-0057 payer APIs on the reference server: Provider Access (PDex v1 attribution, v2 ``$provider-member-match``)
and Payer-to-Payer (HRex ``$member-match``, PDex ``$bulk-member-match``), each followed by ``$davinci-data-export``.

Policy (documented for target authors; synthetic members only, served by these routes and nowhere else):
- Members (``MEMBERS``): ``pa-ann`` attributed to the provider client ``backend-bulk-client``; ``pa-oscar`` attributed
  to it but opted out of Provider Access; ``pa-uma`` a member attributed to another provider (``backend-other-client``);
  ``p2p-carla`` a former member whose data a new payer asks for (claims 2 months, 4 years and 7 years old);
  ``p2p-dan`` another former member (the harness never has his consent).
- Clients: ``backend-bulk-client`` is the provider (Provider Access); ``backend-p2p-client`` is the requesting payer
  of Payer-to-Payer (``NEWPAYER-01`` in Consents), ``backend-other-client`` another payer and provider.
- Matching: MemberPatient family + given name + birthDate + gender and CoverageToMatch subscriberId (or identifier)
  must all equal the member's record. No match or several: ``$member-match`` answers 422 with an OperationOutcome
  (code ``not-found``, the same text whatever the reason).
- Payer-to-Payer Consent (HRex): ``status`` active, ``provision.type`` permit, ``provision.period`` covering today, a
  ``policy`` this payer can honour (``ACCEPTED_POLICIES``: all data, ``#regular``; it cannot segment sensitive data) and
  a recipient (``provision.actor`` with role IRCP, or ``performer``) naming the requesting client's payer identifier
  (``PAYER_IDS``). Otherwise 422 ``business-rule`` "consent cannot be complied with", and no member identifier.
- ``$provider-member-match`` (synchronous 200 Parameters, the STU 2.1 shape; under ``member-match-async`` the STU 2.2
  shape: 202, then a manifest of Group NDJSON): MatchedMembers (attributed to the caller
  and not opted out), ConsentConstrainedMembers (opted out; under ``opted-out-as-non-matched`` folded into
  NonMatchedMembers), NonMatchedMembers (no match, or no treatment relationship). ``$bulk-member-match`` the same with
  the HRex Consent per member. Groups carry the submitted Patients as contained resources, nothing else.
- The MatchedMembers Group is owned by the calling client; ``GET Group``/``Group/{id}`` and ``$davinci-data-export``
  serve only the caller's own Groups (404 otherwise, like an unknown Group). Attribution Groups (v1):
  ``pa-attribution-bulk`` (backend-bulk-client: pa-ann; opted-out members omitted), ``pa-attribution-other``; under
  ``opt-out-group-visible`` also ``pa-opted-out-bulk`` (the provider's opted-out members, whose export holds nothing).
- ``POST Group/{id}/$davinci-data-export`` (Parameters body or query): needs a system/ token (401 without) and
  ``Prefer: respond-async``; ``exportType`` one of ``EXPORT_TYPES`` (400 otherwise), ``_type``, ``_since``,
  ``patient`` (references outside the Group are ignored). Opt-out and consent are re-checked when the export runs.
  Provider Access output has no financial elements (EOB total, payment, adjudication, benefitBalance); Payer-to-Payer
  output holds at least the five years before the request. Status and files reuse reference/bulk.py.
- Single-member Payer-to-Payer by FHIR queries (PDex §Data Retrieval Methods, query each resource): the requesting
  payer's system/ token reads and searches Patient, Coverage and ExplanationOfBenefit (``_id``, ``patient``,
  ``beneficiary``, ``identifier``) of exactly the members it matched with a Consent the payer honoured
  (``$member-match``, or MatchedMembers of ``$bulk-member-match``); the stored Consent is evaluated again on every
  request, so one that has since ended opens nothing. Any other member: a read is 404 like an unknown id, a search
  naming them is an empty searchset. Claims come without financial elements, as in the export. Under
  ``p2p-queries-only`` (PDex STU 2.0 shape) ``$bulk-member-match`` is not offered (404, not advertised).
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from smart_conformance.reference import bulk, fhir
from smart_conformance.reference import scopes as scope_rules
from smart_conformance.reference.backend import P2P_CLIENT_ID
from smart_conformance.reference.context import Context, ctx_of
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.variants import (
    EXPORT_TYPE_DELTA_NEEDS_SINCE,
    MEMBER_MATCH_ASYNC,
    OPT_OUT_GROUP_VISIBLE,
    OPTED_OUT_AS_NON_MATCHED,
    P2P_QUERIES_ONLY,
)

Resource = dict[str, Any]

PROVIDER = "backend-bulk-client"
OTHER_PROVIDER = "backend-other-client"
PAYER_SYSTEM = "http://example.org/fhir/sid/payer-id"
PAYER_IDS = {P2P_CLIENT_ID: "NEWPAYER-01", OTHER_PROVIDER: "OTHERPAYER-02"}  # the payer each backend client acts for
THIS_PAYER = "OLDPAYER-00"
HREX_CONSENT = "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition-hrex-consent.html"
ACCEPTED_POLICIES = (f"{HREX_CONSENT}#regular",)
EXPORT_TYPES = ("hl7.fhir.us.davinci-pdex#provider-delta", "hl7.fhir.us.davinci-pdex#provider-download",
                "hl7.fhir.us.davinci-pdex#provider-snapshot")
MATCH_RESULT_CS = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PdexMultiMemberMatchResultCS"
TYPES = ("Patient", "Coverage", "ExplanationOfBenefit")
FINANCIAL = ("total", "payment", "benefitBalance")  # top-level EOB elements; item.adjudication too
OPERATIONS = {
    "provider-member-match": "http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/provider-member-match",
    "bulk-member-match": "http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/bulk-member-match",
    "davinci-data-export": "http://hl7.org/fhir/us/davinci-atr/OperationDefinition/davinci-data-export",
    "member-match": "http://hl7.org/fhir/us/davinci-hrex/OperationDefinition/member-match",
}


@dataclass(frozen=True)
class Member:
    id: str
    family: str
    given: str
    birth_date: str
    gender: str
    subscriber_id: str
    attributed_to: str | None = None  # the provider client with a treatment relationship
    opted_out: bool = False


MEMBERS = {m.id: m for m in (
    Member("pa-ann", "Attributed", "Ann", "1970-03-14", "female", "PA-1001", PROVIDER),
    Member("pa-oscar", "Optout", "Oscar", "1968-07-02", "male", "PA-1002", PROVIDER, opted_out=True),
    Member("pa-uma", "Unattributed", "Uma", "1985-11-23", "female", "PA-1003", OTHER_PROVIDER),
    Member("p2p-carla", "Consent", "Carla", "1979-05-30", "female", "P2P-2001"),
    Member("p2p-dan", "Noconsent", "Dan", "1962-01-17", "male", "P2P-2002"),
)}
# Claims per member: days before today (service date = lastUpdated).
CLAIM_AGES = {"pa-ann": (30, 800), "pa-oscar": (40,), "pa-uma": (50,), "p2p-carla": (60, 4 * 365, 7 * 365),
              "p2p-dan": (70,)}
ATTRIBUTION_GROUPS = {"pa-attribution-bulk": PROVIDER, "pa-attribution-other": OTHER_PROVIDER}
OPT_OUT_GROUPS = {"pa-opted-out-bulk": PROVIDER}  # opt-out-group-visible: the opted-out Group a provider may see


def _day(days_ago: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days_ago)


def _stamp(days_ago: int) -> str:
    return _day(days_ago).isoformat(timespec="seconds")


def _resources(member: Member) -> list[Resource]:
    """The member's synthetic record (Patient, Coverage, claims with their financial elements as the payer holds
    them); dates are relative to today so the five-year window and _since stay meaningful."""
    patient = {"resourceType": "Patient", "id": member.id, "meta": {"lastUpdated": _stamp(400)},
               "identifier": [{"system": "http://example.org/fhir/sid/member-id", "value": member.subscriber_id}],
               "name": [{"family": member.family, "given": [member.given]}], "gender": member.gender,
               "birthDate": member.birth_date, "telecom": [{"system": "phone", "value": "555-0100"}],
               "address": [{"line": ["1 Synthetic Way"], "city": "Springfield", "state": "IL"}]}
    coverage = {"resourceType": "Coverage", "id": f"{member.id}-cov", "meta": {"lastUpdated": _stamp(400)},
                "status": "active", "subscriberId": member.subscriber_id,
                "beneficiary": {"reference": f"Patient/{member.id}"},
                "payor": [{"identifier": {"system": PAYER_SYSTEM, "value": THIS_PAYER}}]}
    claims = []
    for n, age in enumerate(CLAIM_AGES[member.id], 1):
        claims.append({
            "resourceType": "ExplanationOfBenefit", "id": f"{member.id}-eob-{n}",
            "meta": {"lastUpdated": _stamp(age)}, "status": "active", "use": "claim", "outcome": "complete",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                                 "code": "professional"}]},
            "patient": {"reference": f"Patient/{member.id}"}, "created": _stamp(age),
            "billablePeriod": {"start": _day(age).date().isoformat(), "end": _day(age).date().isoformat()},
            "insurer": {"identifier": {"system": PAYER_SYSTEM, "value": THIS_PAYER}},
            "provider": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}},
            "insurance": [{"focal": True, "coverage": {"reference": f"Coverage/{member.id}-cov"}}],
            "item": [{"sequence": 1, "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt",
                                                                      "code": "99213"}]},
                      "adjudication": [{"category": {"coding": [{"code": "copay"}]},
                                        "amount": {"value": 25.0, "currency": "USD"}}]}],
            "total": [{"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 120.0, "currency": "USD"}}],
            "payment": {"amount": {"value": 95.0, "currency": "USD"}},
            "benefitBalance": [{"category": {"coding": [{"code": "30"}]},
                                "financial": [{"type": {"coding": [{"code": "deductible"}]},
                                               "usedMoney": {"value": 500.0, "currency": "USD"}}]}],
        })
    return [patient, coverage, *claims]


# --- state: Groups created by a match, per server ----------------------------------------------------------------
@dataclass
class MatchGroup:
    id: str
    owner: str
    kind: str  # "provider" or "payer"
    members: list[str]
    created: str


@dataclass
class State:
    groups: dict[str, MatchGroup] = field(default_factory=dict)
    # (client, member) -> the Consent a match honoured: what opens the member's data to that client's FHIR queries
    consents: dict[tuple[str, str], Resource | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_STATES: dict[int, State] = {}
_STATES_LOCK = threading.Lock()


def _state(ctx: Context) -> State:
    with _STATES_LOCK:
        return _STATES.setdefault(id(ctx.store), State())


def _remember_consent(ctx: Context, client_id: str, member_id: str, consent: Resource | None) -> None:
    state = _state(ctx)
    with state.lock:
        state.consents[(client_id, member_id)] = consent


def _consented_members(ctx: Context, client_id: str) -> set[str]:
    """The members whose data the client's FHIR queries may see: matched by it with a Consent that is still one the
    payer can honour (evaluated again now: consent is re-checked when data is requested, not only at match time)."""
    state = _state(ctx)
    with state.lock:
        held = [(member, consent) for (client, member), consent in state.consents.items() if client == client_id]
    if ctx.faults.active(Fault.P2P_QUERY_CONSENT_NOT_CHECKED):
        return {member for member, _consent in held}  # the defect: access follows the match, consent never consulted
    return {member for member, consent in held if _consent_ok(ctx, consent, client_id)}


def _opted_out(ctx: Context, member_id: str) -> bool:
    """The one place opt-out is decided (attribution lists, matches, and again when an export runs)."""
    if ctx.faults.active(Fault.OPT_OUT_IGNORED):
        return False  # the defect: the member's opt-out is never consulted
    return MEMBERS[member_id].opted_out


def _attribution(ctx: Context, owner: str) -> list[str]:
    """v1: the members attributed to a provider; opted-out members are omitted from the list."""
    return [m.id for m in MEMBERS.values() if m.attributed_to == owner and not _opted_out(ctx, m.id)]


def _group(ctx: Context, group_id: str) -> MatchGroup | None:
    if group_id in OPT_OUT_GROUPS and ctx.variants.active(OPT_OUT_GROUP_VISIBLE):
        owner = OPT_OUT_GROUPS[group_id]
        return MatchGroup(group_id, owner, "provider", [m.id for m in MEMBERS.values()
                                                        if m.attributed_to == owner and m.opted_out], "2024-01-01")
    if group_id in ATTRIBUTION_GROUPS:
        owner = ATTRIBUTION_GROUPS[group_id]
        return MatchGroup(group_id, owner, "provider", _attribution(ctx, owner), "2024-01-01")
    state = _state(ctx)
    with state.lock:
        return state.groups.get(group_id)


def _group_resource(ctx: Context, group: MatchGroup) -> Resource:
    return {"resourceType": "Group", "id": group.id, "type": "person", "actual": True,
            "managingEntity": {"identifier": {"system": PAYER_SYSTEM, "value": THIS_PAYER}},
            "quantity": len(group.members), "member": [{"entity": {"reference": f"Patient/{p}"}}
                                                       for p in group.members]}


# --- request parsing -------------------------------------------------------------------------------------------
def _system_caller(ctx: Context, request: Request) -> fhir.Principal:
    who = fhir.authenticate(ctx, request)
    if who.patient is not None or not scope_rules.has_system_scopes(who.scope.split()):
        raise fhir.Refused(fhir.outcome(ctx, 403, "forbidden", "this operation needs a system/ access token"))
    return who


async def _parameters(ctx: Context, request: Request) -> Resource:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise fhir.Refused(fhir.outcome(ctx, 400, "invalid", "the request body must be a Parameters resource"))
    return body


def _parts(param: Resource) -> dict[str, Resource]:
    return {str(p.get("name")): p.get("resource") for p in param.get("part") or [] if isinstance(p, dict)
            and isinstance(p.get("resource"), dict)}


def _find(patient: Resource | None, coverage: Resource | None, *, demographics: bool = True) -> list[Member]:
    if not isinstance(patient, dict) or not isinstance(coverage, dict):
        return []
    names = patient.get("name") or [{}]
    name = names[0] if isinstance(names, list) and names and isinstance(names[0], dict) else {}
    family, given = str(name.get("family", "")), [str(g) for g in name.get("given") or []]
    ids = {str(coverage.get("subscriberId", ""))} | {str(i.get("value")) for i in coverage.get("identifier") or []
                                                      if isinstance(i, dict)}
    found = []
    for m in MEMBERS.values():
        if m.subscriber_id not in ids:
            continue
        if demographics and not (family.lower() == m.family.lower() and m.given in given
                                 and patient.get("birthDate") == m.birth_date and patient.get("gender") == m.gender):
            continue
        found.append(m)
    return found


def _consent_ok(ctx: Context, consent: Resource | None, client_id: str) -> bool:
    """HRex Consent: active permit, period covering today, a policy this payer can honour, recipient = the caller."""
    if not isinstance(consent, dict):
        return False
    provision = consent.get("provision") or {}
    if consent.get("status") != "active":
        return False
    if provision.get("type", "permit") != "permit" and not ctx.faults.active(Fault.CONSENT_NOT_CHECKED):
        return False
    period = provision.get("period") or {}
    today = datetime.now(UTC).date().isoformat()
    if not ctx.faults.active(Fault.CONSENT_PERIOD_IGNORED) and not (
            str(period.get("start", "0000"))[:10] <= today <= str(period.get("end", "9999"))[:10]):
        return False
    policies = {str(p.get("uri")) for p in consent.get("policy") or [] if isinstance(p, dict)}
    if not ctx.faults.active(Fault.CONSENT_POLICY_IGNORED) and not policies & set(ACCEPTED_POLICIES):
        return False
    if ctx.faults.active(Fault.CONSENT_RECIPIENT_NOT_CHECKED):
        return True
    recipients = [a.get("reference", {}).get("identifier", {}) for a in provision.get("actor") or []
                  if isinstance(a, dict) and "IRCP" in json.dumps(a.get("role") or {})]
    recipients += [p.get("identifier", {}) for p in consent.get("performer") or [] if isinstance(p, dict)]
    return any(isinstance(r, dict) and r.get("value") == PAYER_IDS.get(client_id) for r in recipients)


# --- HRex $member-match (single member, Payer-to-Payer) -------------------------------------------------------
def _no_match(ctx: Context) -> Response:
    return fhir.outcome(ctx, 422, "not-found", "no unique member matches the demographics and coverage supplied")


async def member_match(request: Request) -> Response:
    ctx = ctx_of(request)
    try:
        if not (ctx.faults.active(Fault.MEMBER_MATCH_WITHOUT_TOKEN) and not request.headers.get("authorization")):
            who = _system_caller(ctx, request)
            if not scope_rules.permits(who.scope, "Patient", "r") and \
                    not ctx.faults.active(Fault.MEMBER_MATCH_SCOPE_NOT_CHECKED):
                return fhir.outcome(ctx, 403, "forbidden", "the token's scopes do not allow $member-match")
            client_id = who.client_id
        else:
            client_id = P2P_CLIENT_ID  # the defect: an anonymous caller treated as a registered payer
        params = await _parameters(ctx, request)
    except fhir.Refused as refused:
        return refused.response
    given = {str(p.get("name")): p.get("resource") for p in params.get("parameter") or [] if isinstance(p, dict)}
    loose = ctx.faults.active(Fault.MEMBER_MATCH_IGNORES_DEMOGRAPHICS)
    found = _find(given.get("MemberPatient"), given.get("CoverageToMatch"), demographics=not loose)
    if len(found) != 1:
        near = _find(given.get("MemberPatient"), given.get("CoverageToMatch"), demographics=False)
        if near and ctx.faults.active(Fault.MEMBER_MATCH_ORACLE):  # the defect: a near miss says the member exists
            return fhir.outcome(ctx, 422, "business-rule", "member found but demographics differ")
        return _no_match(ctx)
    member = found[0]
    if not _consent_ok(ctx, given.get("Consent"), client_id):
        if ctx.faults.active(Fault.P2P_QUERY_CONSENT_NOT_CHECKED):  # the defect: the match alone opens the data
            _remember_consent(ctx, client_id, member.id, given.get("Consent"))
        return fhir.outcome(ctx, 422, "business-rule", "the consent request cannot be complied with")
    _remember_consent(ctx, client_id, member.id, given.get("Consent"))
    identifier = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MB"}]},
                  "system": "http://example.org/fhir/sid/member-id", "value": member.subscriber_id}
    out = {"resourceType": "Parameters", "parameter": [{"name": "MemberIdentifier", "valueIdentifier": identifier},
                                                       {"name": "MemberId", "valueReference":
                                                        {"reference": f"Patient/{member.id}"}}]}
    if ctx.faults.active(Fault.MEMBER_MATCH_IDENTIFIER_MISSING):
        out["parameter"] = []
    return fhir.fhir_json(ctx, out)


# --- $provider-member-match and $bulk-member-match -------------------------------------------------------------
def _submitted(patient: Resource | None) -> Resource:
    """The submitted Patient as the response Group contains it: exactly what the request carried."""
    copy = dict(patient) if isinstance(patient, dict) else {"resourceType": "Patient"}
    copy.pop("meta", None)
    return copy


def _category_group(ctx: Context, code: str, contained: list[Resource], members: list[str],
                    group_id: str | None = None) -> Resource:
    entries = [{"entity": {"reference": ref}} for ref in members]
    group: Resource = {"resourceType": "Group", "type": "person", "actual": True,
                       "code": {"coding": [{"system": MATCH_RESULT_CS, "code": code}]},
                       "quantity": len(entries), "member": entries, "contained": contained}
    if group_id:
        group["id"] = group_id
    return group


async def _multi_match(request: Request, kind: str) -> Response:
    ctx = ctx_of(request)
    try:
        if kind == "payer" and ctx.variants.active(P2P_QUERIES_ONLY):
            return fhir.outcome(ctx, 404, "not-supported", "$bulk-member-match is not supported")
        if ctx.faults.active(Fault.PDEX_MATCH_WITHOUT_TOKEN) and not request.headers.get("authorization"):
            client_id = PROVIDER if kind == "provider" else P2P_CLIENT_ID  # the defect: anonymous as registered
        else:
            client_id = _system_caller(ctx, request).client_id
        params = await _parameters(ctx, request)
    except fhir.Refused as refused:
        return refused.response
    buckets: dict[str, list[tuple[Resource, str]]] = {"matched": [], "nomatch": [], "consentconstraint": []}
    for param in params.get("parameter") or []:
        if not isinstance(param, dict) or param.get("name") != "MemberBundle":
            continue
        parts = _parts(param)
        patient = parts.get("MemberPatient")
        submitted = _submitted(patient)
        ref = f"#{submitted.get('id', '')}" if submitted.get("id") else "#"
        loose = kind == "provider" and ctx.faults.active(Fault.MEMBER_MATCH_TOO_LOOSE)
        found = _find(patient, parts.get("CoverageToMatch"), demographics=not loose)
        if len(found) != 1:
            buckets["nomatch"].append((submitted, ref))
            continue
        member = found[0]
        if kind == "provider":
            related = member.attributed_to == client_id or ctx.faults.active(Fault.TREATMENT_RELATIONSHIP_NOT_CHECKED)
            if not related or "Consent" not in parts:
                buckets["nomatch"].append((submitted, ref))
            elif _opted_out(ctx, member.id):
                category = "nomatch" if ctx.variants.active(OPTED_OUT_AS_NON_MATCHED) else "consentconstraint"
                buckets[category].append((submitted, ref))
            else:
                buckets["matched"].append((submitted, f"Patient/{member.id}"))
        elif _consent_ok(ctx, parts.get("Consent"), client_id):
            _remember_consent(ctx, client_id, member.id, parts.get("Consent"))
            buckets["matched"].append((submitted, f"Patient/{member.id}"))
        else:
            if ctx.faults.active(Fault.P2P_QUERY_CONSENT_NOT_CHECKED):  # the defect: the match alone opens the data
                _remember_consent(ctx, client_id, member.id, parts.get("Consent"))
            buckets["consentconstraint"].append((submitted, ref))
    if ctx.faults.active(Fault.MEMBER_MATCH_ECHOES_RECORD):  # the defect: the payer's own record goes back
        for submitted, ref in buckets["matched"]:
            record = _resources(MEMBERS[ref.split("/", 1)[1]])[0]
            submitted.update({k: v for k, v in record.items() if k not in ("id", "meta")})
    group_id = f"{'pa' if kind == 'provider' else 'p2p'}-match-{secrets.token_hex(8)}"
    matched_ids = [ref.split("/", 1)[1] for _s, ref in buckets["matched"]]
    state = _state(ctx)
    with state.lock:
        state.groups[group_id] = MatchGroup(group_id, client_id, kind, matched_ids, _stamp(0))
    consent_note = ctx.faults.active(Fault.BULK_MATCH_CONSENT_DETAILS)
    out = []
    for name, code, key in (("MatchedMembers", "match", "matched"), ("NonMatchedMembers", "nomatch", "nomatch"),
                            ("ConsentConstrainedMembers", "consentconstraint", "consentconstraint")):
        items = buckets[key]
        if not items and key != "matched":
            continue
        group = _category_group(ctx, code, [s for s, _r in items], [r for _s, r in items],
                                group_id if key == "matched" else None)
        if key == "consentconstraint" and consent_note and kind == "payer":
            group["text"] = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">"
                                                          "Consent expired or policy not supported</div>"}
            for entry in group["member"]:
                entry["extension"] = [{"url": "http://example.org/consent-error", "valueString": "consent expired"}]
        out.append({"name": name, "resource": group})
    if ctx.variants.active(MEMBER_MATCH_ASYNC):  # PDex STU 2.2: the async pattern, Groups as NDJSON
        groups = [item["resource"] for item in out]
        job = bulk.start_job(ctx, client_id, str(request.url), ["Group"],
                             lambda rtype: groups if rtype == "Group" else [])
        return Response(status_code=202, headers={"Content-Location": f"{ctx.fhir_base}/bulk-status/{job.job_id}",
                                                  "Cache-Control": "no-store"})
    return fhir.fhir_json(ctx, {"resourceType": "Parameters", "parameter": out})


async def provider_member_match(request: Request) -> Response:
    return await _multi_match(request, "provider")


async def bulk_member_match(request: Request) -> Response:
    return await _multi_match(request, "payer")


# --- Group read and search (the caller's own Groups only) ------------------------------------------------------
def _visible(ctx: Context, group: MatchGroup | None, client_id: str) -> bool:
    return group is not None and (group.owner == client_id or ctx.faults.active(Fault.GROUP_SEARCH_UNRESTRICTED))


async def group_read(request: Request) -> Response:
    ctx = ctx_of(request)
    try:
        who = _system_caller(ctx, request)
    except fhir.Refused as refused:
        return refused.response
    group = _group(ctx, request.path_params["group_id"])
    if not _visible(ctx, group, who.client_id) or (
            group is not None and group.id not in ATTRIBUTION_GROUPS and ctx.faults.active(Fault.MATCHED_GROUP_NOT_READABLE)):
        return fhir.outcome(ctx, 404, "not-found", "Group is not known")
    assert group is not None
    return fhir.fhir_json(ctx, _group_resource(ctx, group))


async def group_search(request: Request) -> Response:
    ctx = ctx_of(request)
    try:
        who = _system_caller(ctx, request)
    except fhir.Refused as refused:
        return refused.response
    groups = [g for g in (_group(ctx, gid) for gid in (*ATTRIBUTION_GROUPS, *OPT_OUT_GROUPS))
              if _visible(ctx, g, who.client_id)]
    state = _state(ctx)
    with state.lock:
        groups += [g for g in state.groups.values() if _visible(ctx, g, who.client_id)]
    wanted = request.query_params.get("_id")
    if wanted:
        groups = [g for g in groups if g is not None and g.id in wanted.split(",")]
    entries = [{"fullUrl": f"{ctx.fhir_base}/Group/{g.id}", "resource": _group_resource(ctx, g),
                "search": {"mode": "match"}} for g in groups if g is not None]
    return fhir.fhir_json(ctx, {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                                "link": [{"relation": "self", "url": str(request.url)}], "entry": entries})


# --- $davinci-data-export ------------------------------------------------------------------------------------
def _export_params(params: Resource, query: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in params.get("parameter") or []:
        if not isinstance(p, dict):
            continue
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if isinstance(value, dict):
            value = value.get("reference")
        if value is not None:
            out.setdefault(str(p.get("name")), []).append(str(value))
    for key, value in query.multi_items():
        out.setdefault(key, []).append(value)
    return out


def _parse_instant(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _strip_financial(resource: Resource) -> Resource:
    copy = {k: v for k, v in resource.items() if k not in FINANCIAL}
    if "item" in copy:
        copy["item"] = [{k: v for k, v in item.items() if k != "adjudication"} for item in copy["item"]]
    return copy


async def data_export(request: Request) -> Response:
    ctx = ctx_of(request)
    try:
        if ctx.faults.active(Fault.DATA_EXPORT_WITHOUT_TOKEN) and not request.headers.get("authorization"):
            client_id = PROVIDER
            scope = " ".join(f"system/{t}.rs" for t in TYPES)
        else:
            who = _system_caller(ctx, request)
            client_id, scope = who.client_id, who.scope
        body = await request.body()
        params = await _parameters(ctx, request) if body.strip() else {"resourceType": "Parameters"}
    except fhir.Refused as refused:
        return refused.response
    group = _group(ctx, request.path_params["group_id"])
    if group is None or (group.owner != client_id and not ctx.faults.active(Fault.OTHER_CLIENT_GROUP_EXPORTABLE)):
        return fhir.outcome(ctx, 404, "not-found", "Group is not known")
    if "respond-async" not in request.headers.get("prefer", ""):
        return fhir.outcome(ctx, 400, "invalid", "$davinci-data-export requires the header Prefer: respond-async")
    given = _export_params(params, request.query_params)
    export_type = (given.get("exportType") or [""])[0]
    accepted = EXPORT_TYPES[1:2] if ctx.faults.active(Fault.EXPORT_TYPE_REJECTED) else EXPORT_TYPES
    if export_type and export_type not in accepted:
        return fhir.outcome(ctx, 400, "invalid", f"exportType {export_type!r} is not supported")
    if not export_type and group.kind == "provider" and ctx.variants.active(EXPORT_TYPE_DELTA_NEEDS_SINCE):
        return fhir.outcome(ctx, 400, "required", "exportType is required")
    since = None
    if given.get("_since"):
        since = _parse_instant(given["_since"][0])
        if since is None:
            return fhir.outcome(ctx, 400, "invalid", "_since is not a FHIR instant")
    elif export_type.endswith("provider-delta") and ctx.variants.active(EXPORT_TYPE_DELTA_NEEDS_SINCE):
        return fhir.outcome(ctx, 400, "required", "provider-delta needs _since (PDex: the client supplies it)")
    asked = [t for v in given.get("_type") or [] for t in v.split(",") if t]
    unsupported = [t for t in asked if t not in TYPES]
    if unsupported:
        return fhir.outcome(ctx, 400, "not-supported", f"resource types {unsupported} are not supported")
    permitted = [t for t in TYPES if scope_rules.permits(scope, t, "r")]
    if ctx.faults.active(Fault.DATA_EXPORT_TYPE_IGNORED):
        types = list(TYPES)  # the defect: neither _type nor the token's scopes narrow the output
    else:
        beyond = [t for t in asked if t not in permitted]
        if beyond:
            return fhir.outcome(ctx, 403, "forbidden", f"the token's scopes do not cover {', '.join(beyond)}")
        types = asked or permitted
    members = list(group.members)
    named = [ref.split("/", 1)[-1] for ref in given.get("patient") or []]
    if named:
        if ctx.faults.active(Fault.UNATTRIBUTED_MEMBER_EXPORTED):
            members = [p for p in named if p in MEMBERS]  # the defect: any known member named is exported
        else:
            members = [p for p in named if p in group.members]  # references outside the Group are ignored
    if group.kind == "provider":
        members = [p for p in members if not _opted_out(ctx, p)]  # opt-out re-checked when the export runs
    resources = [r for p in members for r in _resources(MEMBERS[p]) if r["resourceType"] in types]
    if since is not None and not ctx.faults.active(Fault.DATA_EXPORT_SINCE_IGNORED):
        resources = [r for r in resources if _parse_instant(r["meta"]["lastUpdated"]) and
                     (_parse_instant(r["meta"]["lastUpdated"]) or since) > since]
    if group.kind == "provider" and not ctx.faults.active(Fault.COST_SHARING_INCLUDED):
        resources = [_strip_financial(r) if r["resourceType"] == "ExplanationOfBenefit" else r for r in resources]
    if group.kind == "payer":
        resources = [_strip_financial(r) if r["resourceType"] == "ExplanationOfBenefit" else r for r in resources]
        if ctx.faults.active(Fault.FIVE_YEAR_WINDOW_IGNORED):  # the defect: the Patient Access year, not five
            resources = [r for r in resources if r["resourceType"] != "ExplanationOfBenefit"
                         or (_parse_instant(r["meta"]["lastUpdated"]) or _day(0)) > _day(365)]
    by_type: dict[str, list[Resource]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    job = bulk.start_job(ctx, client_id, str(request.url), types, lambda rtype: by_type.get(rtype, []))
    return Response(status_code=202, headers={"Content-Location": f"{ctx.fhir_base}/bulk-status/{job.job_id}",
                                              "Cache-Control": "no-store"})


def advertise(ctx: Context, resources: list[Resource]) -> None:
    """The CapabilityStatement's Group and Patient operations for these APIs."""
    if ctx.faults.active(Fault.PDEX_OPERATIONS_NOT_ADVERTISED):
        return
    group_ops = ["provider-member-match", "bulk-member-match", "davinci-data-export"]
    if ctx.variants.active(P2P_QUERIES_ONLY):
        group_ops.remove("bulk-member-match")
    resources.append({"type": "Group", "interaction": [{"code": "read"}, {"code": "search-type"}],
                      "searchParam": [{"name": "_id", "type": "token"}],
                      "operation": [{"name": name, "definition": OPERATIONS[name]} for name in group_ops]})
    for entry in resources:
        if entry.get("type") == "Patient":
            entry.setdefault("operation", []).append({"name": "member-match", "definition": OPERATIONS["member-match"]})


# --- single-member Payer-to-Payer by FHIR queries -----------------------------------------------------------------
_SEARCH_LINKS = {"Patient": (), "Coverage": ("beneficiary",), "ExplanationOfBenefit": ("patient",)}


def _owner(resource: Resource) -> str:
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    link = resource.get("beneficiary") or resource.get("patient") or {}
    return str(link.get("reference", "")).rsplit("/", 1)[-1]


def _matches(resource: Resource, name: str, values: list[str]) -> bool:
    """One search parameter (comma = OR) against one of the member's resources."""
    wanted = {v.strip() for v in values if v.strip()}
    if name == "_id":
        return str(resource["id"]) in wanted
    if name in ("patient", "beneficiary"):
        return _owner(resource) in {v.rsplit("/", 1)[-1] for v in wanted}
    if name == "identifier" and resource["resourceType"] == "Patient":
        held = {f"{i.get('system')}|{i.get('value')}" for i in resource.get("identifier") or []}
        held |= {str(i.get("value")) for i in resource.get("identifier") or []}
        return bool(held & wanted)
    return True  # parameters this view does not filter on (_count, _format...) narrow nothing


def p2p_query(ctx: Context, request: Request, who: fhir.Principal, parts: list[str]) -> Response:
    """A read or search by the requesting payer's token: only the members it matched with an honoured Consent."""
    if ctx.faults.active(Fault.P2P_QUERIES_REFUSED):  # the defect: only the export path knows the matched members
        return fhir.outcome(ctx, 403, "forbidden", "this access token has no patient context")
    rtype = parts[0]
    if len(parts) > 2:
        return fhir.outcome(ctx, 404, "not-supported", "this interaction is not supported")
    fhir._require_scope(ctx, who, rtype, "r" if len(parts) == 2 else "s")
    held = [r for member in sorted(_consented_members(ctx, who.client_id)) for r in _resources(MEMBERS[member])
            if r["resourceType"] == rtype]
    held = [_strip_financial(r) if rtype == "ExplanationOfBenefit" else r for r in held]
    if len(parts) == 2:
        found = next((r for r in held if r["id"] == parts[1]), None)
        return fhir.fhir_json(ctx, found) if found is not None else fhir._not_found(ctx, rtype, parts[1])
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).extend(value.split(","))
    names = {"_id", "identifier", *_SEARCH_LINKS[rtype]} | ({"patient"} if rtype == "Coverage" else set())
    hits = [r for r in held if all(_matches(r, name, values) for name, values in params.items() if name in names)]
    entries = [{"fullUrl": f"{ctx.fhir_base}/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}}
               for r in hits]
    return fhir.fhir_json(ctx, {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                                "link": [{"relation": "self", "url": str(request.url)}], "entry": entries})
