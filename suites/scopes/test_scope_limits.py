"""Scope limits

SMART App Launch 2.2 §Scopes and launch context and FHIR R4 security.html: the FHIR server serves a resource type and
interaction only when the token's granted scopes cover it. A token limited to some types is refused for the others,
by read and by search; a read-only grant never creates, updates or deletes anything (batch and transaction
included); and the v1 (``patient/X.read``) and v2 (``patient/X.rs``) syntaxes each give access to exactly the type
they name.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from smart_conformance.checks import could_not_check, expect, fail, not_applicable
from smart_conformance.compartment import entries, is_refusal, patients_of, reply_label
from smart_conformance.config import Target
from smart_conformance.fhir import FHIR_JSON, Reply, call, leaked_data
from smart_conformance.http import RecordingClient
from smart_conformance.oauth import covered_by, scope_set

CLAIM_TYPES = ("Coverage", "ExplanationOfBenefit")
# A write that is refused may be refused for scope (401/403), as not allowed (405), or as bad input (400, 404, 422):
# none of these change anything, which the follow-up read proves for delete and update.
WRITE_REFUSALS = (400, 401, 403, 404, 405, 409, 412, 422, 501)


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
def test_type_outside_scopes_refused(interaction: str, http: RecordingClient, target: Target,
                                     limited_launch: Any, own_records: Any) -> None:
    """With scopes.limited, the member's own Coverage and EOB are refused by read and by search."""
    outside = _types_outside(limited_launch.token.scope)
    if not outside:
        not_applicable(f"scopes.limited granted {limited_launch.token.scope!r}, which covers Coverage and "
                       "ExplanationOfBenefit: nothing outside the grant to probe")
    token = limited_launch.token.access_token
    for rtype in outside:
        if interaction == "read":
            rid = own_records.first(rtype)
            if rid is None:
                could_not_check(f"the member has no {rtype} to read (found none with the full-scope token)")
            url, params = f"{target.fhir_base_url}/{rtype}/{rid}", None
        else:
            url, params = f"{target.fhir_base_url}/{rtype}", {"patient": own_records.patient_id}
        reply = call(http, "GET", url, token=token, params=params)
        _refused_without_data(reply, target, f"{reply_label('GET', url, target)} under {limited_launch.token.scope!r}")


def _write_probe(kind: str, target: Target, own: Any) -> tuple[str, str, dict[str, str], Any]:
    """(method, url, extra headers, JSON body) of one write a read-only grant must not be able to make."""
    base, pid = target.fhir_base_url, own.patient_id
    coverage = own.first("Coverage")
    new_coverage = {"resourceType": "Coverage", "status": "active", "beneficiary": {"reference": f"Patient/{pid}"},
                    "payor": [{"display": "smart-conformance write probe"}]}
    if kind == "create":
        return "POST", f"{base}/Coverage", {}, new_coverage
    if kind == "conditional-create":
        return "POST", f"{base}/Coverage", {"If-None-Exist": "identifier=smart-conformance|probe"}, new_coverage
    if kind == "update":
        return "PUT", f"{base}/Patient/{pid}", {}, {**own.patient, "gender": "unknown"}
    if kind == "conditional-update":
        return "PUT", f"{base}/Coverage?patient={pid}", {}, {**new_coverage, "status": "cancelled"}
    if kind == "delete":
        if coverage is None:
            could_not_check("the member has no Coverage to try deleting")
        return "DELETE", f"{base}/Coverage/{coverage}", {}, None
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": new_coverage, "request": {"method": "POST", "url": "Coverage"}},
        {"request": {"method": "DELETE", "url": f"Patient/{pid}"}}]}
    return "POST", base, {}, bundle


def _version(body: Any) -> tuple[Any, Any]:
    meta = body.get("meta") if isinstance(body, dict) else None
    return (meta or {}).get("versionId"), (meta or {}).get("lastUpdated")


@pytest.mark.requirement("SMART-FHIR-06", "SMART-FHIR-03")
@pytest.mark.parametrize("kind", ["create", "conditional-create", "update", "conditional-update", "delete",
                                  "transaction"])
def test_writes_refused_under_read_scopes(kind: str, http: RecordingClient, target: Target, launch: Any,
                                          own_records: Any) -> None:
    """Under the read-only full grant, a create, update, delete or transaction is refused and changes nothing."""
    granted = scope_set(launch.token.scope)
    if any(covered_by(f"patient/{t}.cud", granted) or covered_by(f"patient/{t}.c", granted)
           for t in ("Coverage", "Patient")):
        not_applicable(f"the full grant {launch.token.scope!r} includes write scopes")
    token = launch.token.access_token
    method, url, headers, body = _write_probe(kind, target, own_records)
    before = None
    if kind in ("delete", "update"):
        watched = url if kind == "delete" else f"{target.fhir_base_url}/Patient/{own_records.patient_id}"
        before = call(http, "GET", watched, token=token)
        if before.status != 200:
            could_not_check(f"GET {watched} answered HTTP {before.status} before the write probe")
    sent = {"Content-Type": FHIR_JSON, **headers} if body is not None else headers
    reply = call(http, method, url, token=token, headers=sent,
                 content=json.dumps(body).encode() if body is not None else None)
    expect(reply.status in WRITE_REFUSALS,
           expected=f"{kind} refused under read scopes (HTTP 401/403/405/400, never 2xx)",
           actual=f"HTTP {reply.status}", requirement="SMART-FHIR-06", exchange=reply.exchange)
    if before is not None:
        after = call(http, "GET", watched, token=token)
        expect(after.status == 200 and _version(after.json()) == _version(before.json())
               and after.json() == before.json(),
               expected=f"after the refused {kind}, {reply_label('GET', watched, target)} unchanged (HTTP 200)",
               actual=f"HTTP {after.status}, meta {_version(after.json())} (before: {_version(before.json())})",
               requirement="SMART-FHIR-06", exchange=after.exchange)


def _single_type_launch(launcher: Any, target: Target, smart_config: dict[str, Any], capability: str,
                        scope: str) -> Any:
    capabilities = smart_config.get("capabilities") or []
    if capability not in capabilities:
        not_applicable(f"smart-configuration does not advertise {capability}")
    result = launcher.launch(scope=f"launch/patient {scope}")
    if result.token is None:
        fail(expected=f"a token for the advertised {capability} scope {scope!r}",
             actual="; ".join(result.problems) or "no token", requirement="CARIN-SEC-05" if capability ==
             "permission-v1" else "SMART-FHIR-03", exchange=None)
    return result


def _only_that_type(http: RecordingClient, target: Target, result: Any, scope: str) -> None:
    """Coverage search works for the member; Patient read and EOB search do not."""
    token, pid = result.token.access_token, result.token.patient or target.member.patient_id
    url = f"{target.fhir_base_url}/Coverage"
    reply = call(http, "GET", url, token=token, params={"patient": pid})
    found = [r for r in entries(reply.json(), mode="match") if r.get("resourceType") == "Coverage"]
    expect(reply.status == 200 and bool(found) and all(pid in patients_of(r) for r in found),
           expected=f"{scope!r} lets the member search their Coverage (HTTP 200, their Coverage)",
           actual=f"HTTP {reply.status}, {len(found)} Coverage", exchange=reply.exchange)
    for method, path, params in (("GET", f"Patient/{pid}", None),
                                 ("GET", "ExplanationOfBenefit", {"patient": pid})):
        reply = call(http, method, f"{target.fhir_base_url}/{path}", token=token, params=params)
        _refused_without_data(reply, target, f"{method} {path} under {scope!r}", requirement="SMART-FHIR-03")


@pytest.mark.requirement("SMART-SCOPE-01", "CARIN-SEC-05", "SMART-FHIR-03")
def test_v1_scope_grants_only_its_type(launcher: Any, http: RecordingClient, target: Target,
                                       smart_config: dict[str, Any]) -> None:
    """patient/Coverage.read (v1) reads the member's Coverage and nothing else."""
    scope = "patient/Coverage.read"
    _only_that_type(http, target, _single_type_launch(launcher, target, smart_config, "permission-v1", scope), scope)


@pytest.mark.requirement("SMART-FHIR-03", "SMART-SCOPE-02")
def test_v2_scope_grants_only_its_type(launcher: Any, http: RecordingClient, target: Target,
                                       smart_config: dict[str, Any]) -> None:
    """patient/Coverage.rs (v2) reads the member's Coverage and nothing else."""
    scope = "patient/Coverage.rs"
    _only_that_type(http, target, _single_type_launch(launcher, target, smart_config, "permission-v2", scope), scope)
