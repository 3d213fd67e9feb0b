"""Scope limits

SMART App Launch 2.2 §Scopes and launch context and FHIR R4 security.html: the FHIR server serves a resource type and
interaction only when the token's granted scopes cover it. A token limited to some types is refused for the others,
by read and by search; a read-only grant never creates, updates or deletes anything (batch and transaction
included); and the v1 (``patient/X.read``) and v2 (``patient/X.rs``) syntaxes each give access to exactly the type
they name. Every refusal is judged next to its positive control (the same request with the full-scope token
succeeds), and every write probe is harmless even when a faulty server accepts it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from smart_conformance.checks import could_not_check, expect, fail, not_applicable
from smart_conformance.compartment import entries, is_refusal, patients_of, reply_label, resources_in
from smart_conformance.config import Target
from smart_conformance.fhir import FHIR_JSON, Reply, call, leaked_data
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import Launcher
from smart_conformance.members import MemberRecords, next_link
from smart_conformance.oauth import covered_by, scope_set
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, production_unsafe, proves

CLAIM_TYPES = ("Coverage", "ExplanationOfBenefit")
# A write refused for scope (401/403), as not supported by a read-only API (405/501), or with a status the target's
# guide allows for refusals (ig.unauthorized_statuses, e.g. 404).
SCOPE_REFUSALS = (401, 403, 405, 501)
MISSING_ID = "smart-conformance-no-such-record"


def _refused_without_data(reply: Reply, target: Target, label: str, requirement: Any = None) -> None:
    leak = leaked_data(reply)
    expect(is_refusal(reply, target) and leak is None,
           expected=f"{label} refused: HTTP 401/403 (or one of {list(target.unauthorized_statuses)}) with no data",
           actual=f"HTTP {reply.status}" + (f" with {leak}" if leak else ""), requirement=requirement,
           exchange=reply.exchange)


def _types_outside(scope: str | None) -> list[str]:
    granted = scope_set(scope)
    return [t for t in CLAIM_TYPES if not covered_by(f"patient/{t}.rs", granted)]


@pytest.mark.requirement("SMART-FHIR-03", "CARIN-SEC-08")
@pytest.mark.parametrize("interaction", ["read", "search"])
@proves(Fault.SCOPE_NOT_ENFORCED)
def test_type_outside_scopes_refused(interaction: str, http: RecordingClient, target: Target,
                                     limited_launch: LaunchResult, own_records: MemberRecords) -> None:
    """With scopes.limited, the member's own Coverage and EOB are refused by read and by search.

    The types probed are those outside what scopes.limited asks for; the positive control is the same read or search
    with the full-scope token (own_records), which succeeds."""
    asked = _types_outside(target.scopes.get("limited"))
    if not asked:
        not_applicable(f"scopes.limited {target.scopes.get('limited')!r} covers Coverage and ExplanationOfBenefit: "
                       "nothing outside it to probe")
    granted_anyway = [t for t in asked if t not in _types_outside(limited_launch.token.scope)]
    if granted_anyway:
        could_not_check(f"the server granted {limited_launch.token.scope!r} for scopes.limited, covering "
                        f"{', '.join(granted_anyway)} that was not asked for (see test_granted_scope_within_requested)")
    own_records.vouch("refusing types outside the limited grant")
    token = limited_launch.token.access_token
    for rtype in asked:
        if interaction == "read":
            rid = own_records.first(rtype)
            if rid is None:
                could_not_check(f"the member has no {rtype} to read (found none with the full-scope token)")
            url, params = f"{target.fhir_base_url}/{rtype}/{rid}", None
        else:
            url, params = f"{target.fhir_base_url}/{rtype}", {"patient": own_records.patient_id}
        reply = call(http, "GET", url, token=token, params=params)
        _refused_without_data(reply, target, f"{reply_label('GET', url, target)} under {limited_launch.token.scope!r}")


def _reach_outside(me: str) -> list[tuple[str, dict[str, str]]]:
    """Requests for a type the limited grant covers (Patient) that reach claim types through references."""
    return [("Patient", {"_id": me, "_revinclude": "ExplanationOfBenefit:patient"}),
            ("Patient", {"_id": me, "_revinclude": "Coverage:beneficiary"}),
            (f"Patient/{me}/$everything", {})]


@pytest.mark.requirement("SMART-FHIR-03")
@proves(Fault.INCLUDE_IGNORES_SCOPES, Fault.SCOPE_NOT_ENFORCED)
def test_types_outside_scopes_never_included(http: RecordingClient, target: Target, launch: LaunchResult,
                                             limited_launch: LaunchResult, own_records: MemberRecords) -> None:
    """With scopes.limited, no other way in reaches the types the grant leaves out: ``_revinclude`` of the member's
    claims and coverage and ``$everything`` answer without them (or are refused), and a next link of the full grant's
    claims search, followed with the limited token, is refused or empty of claims.

    Positive control: the same request with the full-scope token returns those types, so an answer without them
    under the limited grant is the server applying the scopes, not a request it ignores."""
    outside = _types_outside(limited_launch.token.scope)
    if not outside or not covered_by("patient/Patient.rs", scope_set(limited_launch.token.scope)):
        not_applicable(f"the limited grant {limited_launch.token.scope!r} does not cover Patient while leaving out "
                       f"{' or '.join(CLAIM_TYPES)}: no search on a covered type to reach them through")
    own_records.vouch("judging includes under the limited grant")
    base, me, probed = target.fhir_base_url, own_records.patient_id, 0
    for path, params in _reach_outside(me):
        full = call(http, "GET", f"{base}/{path}", token=launch.token.access_token, params=params)
        reached = {r.get("resourceType") for r in resources_in(full)} & set(outside) if full.status == 200 else set()
        if not reached:
            continue  # the server does not offer this way in (or the member has none of those types): not a probe
        probed += 1
        reply = call(http, "GET", f"{base}/{path}", token=limited_launch.token.access_token, params=params)
        found = sorted({str(r.get("resourceType")) for r in resources_in(reply)} & set(outside))
        expect(not found, expected=f"{reply_label('GET', str(reply.response.url), target)} under "
                                   f"{limited_launch.token.scope!r}: no {', '.join(sorted(reached))}",
               actual=f"HTTP {reply.status} with {', '.join(found)} resources", exchange=reply.exchange)
    first = call(http, "GET", f"{base}/ExplanationOfBenefit", token=launch.token.access_token,
                 params={"patient": me, "_count": "1"})
    link = next_link(first.json()) if first.status == 200 and "ExplanationOfBenefit" in outside else None
    if link is not None and link.startswith(base):  # a next link of the full grant, followed under the limited one
        probed += 1
        reply = call(http, "GET", link, token=limited_launch.token.access_token)
        found = sorted({str(r.get("resourceType")) for r in resources_in(reply)} & set(outside))
        expect(not found, expected=f"the full grant's next link of ExplanationOfBenefit?patient={me}, followed under "
                                   f"{limited_launch.token.scope!r}: refused or without ExplanationOfBenefit",
               actual=f"HTTP {reply.status} with {', '.join(found)} resources", exchange=reply.exchange)
    if not probed:
        not_applicable("neither _revinclude of claims and coverage, $everything nor a next link returns those types "
                       "with the full-scope token: no way in to probe")


def _bare(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as a client would send it back: without server-maintained meta."""
    return {k: v for k, v in resource.items() if k != "meta"}


def _write_probe(kind: str, target: Target, own: Any, coverage: dict[str, Any]) -> tuple[str, str, dict[str, str], Any]:
    """(method, url, extra headers, JSON body) of one write a read-only grant must not be able to make.

    Every probe is built to change nothing even on a server that wrongly accepts it: a conditional create whose
    condition matches an existing record, updates identical to the current resource, a delete of an id that does not
    exist, and a transaction of those. No new, altered or deleted data, whatever the server does."""
    base, pid = target.fhir_base_url, own.patient_id
    cid = str(coverage["id"])
    if kind == "create":  # conditional create that matches the member's existing Coverage: nothing to create
        body = {k: v for k, v in _bare(coverage).items() if k != "id"}
        return "POST", f"{base}/Coverage", {"If-None-Exist": f"_id={cid}"}, body
    if kind == "update":  # the member's Patient, exactly as read
        return "PUT", f"{base}/Patient/{pid}", {}, _bare(own.patient)
    if kind == "conditional-update":  # conditional update matching the existing Coverage, with its own content
        return "PUT", f"{base}/Coverage?_id={cid}", {}, _bare(coverage)
    if kind == "delete":  # an id that does not exist
        return "DELETE", f"{base}/Coverage/{MISSING_ID}", {}, None
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _bare(own.patient), "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        {"request": {"method": "DELETE", "url": f"Coverage/{MISSING_ID}"}}]}
    return "POST", base, {}, bundle


@pytest.mark.requirement("SMART-FHIR-06", "SMART-FHIR-03")
@pytest.mark.parametrize("kind", ["create", "update", "conditional-update", "delete", "transaction"])
@proves(Fault.WRITES_ALLOWED)
@production_unsafe('sends write requests (POST, PUT, DELETE, a transaction), harmless probes but writes')
def test_writes_refused_under_read_scopes(kind: str, http: RecordingClient, target: Target, launch: LaunchResult,
                                          own_records: MemberRecords) -> None:
    """Under the read-only full grant, a create, update, delete or transaction is refused and changes nothing.

    Harmless by construction (see _write_probe): the probes are safe against a real payer's staging data even when
    the server wrongly accepts them, so no target needs to opt in. A 2xx is the finding; a 4xx other than a scope
    refusal (400, 409, 412, 422...) shows the server judged the content before the scope, which cannot be read as a
    refusal for scope (could not check)."""
    granted = scope_set(launch.token.scope)
    if any(covered_by(f"patient/{t}.cud", granted) or covered_by(f"patient/{t}.c", granted)
           for t in ("Coverage", "Patient")):
        not_applicable(f"the full grant {launch.token.scope!r} includes write scopes")
    own_records.vouch("judging a refused write")
    cid = own_records.first("Coverage")
    if cid is None:
        could_not_check("the member has no Coverage: the harmless probes are built from an existing one")
    watched = [f"Patient/{own_records.patient_id}", f"Coverage/{cid}"]
    token = launch.token.access_token
    before = {path: call(http, "GET", f"{target.fhir_base_url}/{path}", token=token) for path in watched}
    if any(r.status != 200 for r in before.values()):
        could_not_check("before the write probe: " + ", ".join(f"GET {p} HTTP {r.status}" for p, r in before.items()))
    method, url, headers, body = _write_probe(kind, target, own_records, before[f"Coverage/{cid}"].json())
    sent = {"Content-Type": FHIR_JSON, **headers} if body is not None else headers
    reply = call(http, method, url, token=token, headers=sent,
                 content=json.dumps(body).encode() if body is not None else None)
    refused = reply.status in SCOPE_REFUSALS or is_refusal(reply, target)
    expect(refused or 400 <= reply.status < 500,
           expected=f"{kind} refused under read scopes (HTTP 401/403/405, never 2xx or 5xx)",
           actual=f"HTTP {reply.status}", requirement="SMART-FHIR-06", exchange=reply.exchange)
    for path, was in before.items():
        after = call(http, "GET", f"{target.fhir_base_url}/{path}", token=token)
        expect(after.status == 200 and after.json() == was.json(),
               expected=f"after the {kind} probe, GET {path} unchanged (HTTP 200, same content and meta)",
               actual=f"HTTP {after.status}, meta {_version(after.json())} (before: {_version(was.json())})",
               requirement="SMART-FHIR-06", exchange=after.exchange)
    if not refused:
        could_not_check(f"{kind} answered HTTP {reply.status}: the server judged the request's content before (or "
                        "instead of) the token's scopes, so this is not a refusal for scope")


def _version(body: Any) -> tuple[Any, Any]:
    meta = body.get("meta") if isinstance(body, dict) else None
    return (meta or {}).get("versionId"), (meta or {}).get("lastUpdated")


def _single_type_launch(launcher: Launcher, target: Target, smart_config: dict[str, Any], capability: str,
                        scope: str) -> LaunchResult:
    capabilities = smart_config.get("capabilities") or []
    if capability not in capabilities:
        not_applicable(f"smart-configuration does not advertise {capability}")
    result = launcher.launch(scope=f"launch/patient {scope}")
    if result.token is None:
        fail(expected=f"a token for the advertised {capability} scope {scope!r}",
             actual="; ".join(result.problems) or "no token", requirement="CARIN-SEC-05" if capability ==
             "permission-v1" else "SMART-FHIR-03", exchange=None)
    return result


def _only_that_type(http: RecordingClient, target: Target, result: LaunchResult, scope: str, own: MemberRecords,
                    works: str | tuple[str, ...]) -> None:
    """Coverage search works for the member (``works``: what its failure breaks); Patient read and EOB search do not
    (their positive control: the same requests with the full-scope token, in ``own``)."""
    own.vouch(f"refusing Patient and ExplanationOfBenefit under {scope!r}")
    token, pid = result.token.access_token, result.token.patient or target.member.patient_id
    url = f"{target.fhir_base_url}/Coverage"
    reply = call(http, "GET", url, token=token, params={"patient": pid})
    found = [r for r in entries(reply.json(), mode="match") if r.get("resourceType") == "Coverage"]
    expect(reply.status == 200 and bool(found) and all(pid in patients_of(r) for r in found),
           expected=f"{scope!r} lets the member search their Coverage (HTTP 200, their Coverage)",
           actual=f"HTTP {reply.status}, {len(found)} Coverage", requirement=works, exchange=reply.exchange)
    for method, path, params in (("GET", f"Patient/{pid}", None),
                                 ("GET", "ExplanationOfBenefit", {"patient": pid})):
        reply = call(http, method, f"{target.fhir_base_url}/{path}", token=token, params=params)
        _refused_without_data(reply, target, f"{method} {path} under {scope!r}", requirement="SMART-FHIR-03")


@pytest.mark.requirement("SMART-SCOPE-01", "CARIN-SEC-05", "SMART-FHIR-03")
@proves(Fault.SCOPE_NOT_ENFORCED, Fault.SEARCH_UNFILTERED, Fault.V1_SCOPES_IGNORED)
def test_v1_scope_grants_only_its_type(launcher: Launcher, http: RecordingClient, target: Target,
                                       smart_config: dict[str, Any], own_records: MemberRecords) -> None:
    """patient/Coverage.read (v1) reads the member's Coverage and nothing else."""
    scope = "patient/Coverage.read"
    _only_that_type(http, target, _single_type_launch(launcher, target, smart_config, "permission-v1", scope), scope,
                    own_records, ("CARIN-SEC-05", "SMART-SCOPE-01"))


@pytest.mark.requirement("SMART-FHIR-03", "SMART-SCOPE-02")
@proves(Fault.SCOPE_NOT_ENFORCED, Fault.SEARCH_UNFILTERED)
def test_v2_scope_grants_only_its_type(launcher: Launcher, http: RecordingClient, target: Target,
                                       smart_config: dict[str, Any], own_records: MemberRecords) -> None:
    """patient/Coverage.rs (v2) reads the member's Coverage and nothing else."""
    scope = "patient/Coverage.rs"
    _only_that_type(http, target, _single_type_launch(launcher, target, smart_config, "permission-v2", scope), scope,
                    own_records, "SMART-FHIR-03")
