"""Provider Access: $davinci-data-export on the MatchedMembers Group

PDex Provider Access v2 §Da Vinci Data Export Operation (§pdex-290 to §pdex-311) and §Access and Refresh Tokens
(§pdex-312 to §pdex-317), Bulk Data 2.0 §Kick-off: the provider's client exports only Groups it is associated with,
with an access token; the export re-checks opt-out when it runs (§pdex-294) and ignores patient references outside
the Group (§pdex-296); exportType takes the IG's values (§pdex-297), _type and _since narrow the output; claims come
without provider remittances and member cost-sharing (42 CFR 422.121(a), the CARIN non-financial Basis profiles).
Every NDJSON line is read: its Patient id and its subject, patient and beneficiary references.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import allure
import pytest

from smart_conformance.checks import could_not_check, expect, expectations, not_applicable
from smart_conformance.config import ProviderAccess, Target
from smart_conformance.oauth import covered_by, scope_set
from smart_conformance.smart import bulk, pdex
from smart_conformance.smart.backend import BackendSession, must_have_token
from smart_conformance.smart.bulk import Export, bearer, kickoff
from smart_conformance.testplan import Fault, production_unsafe, proves

pytestmark = production_unsafe("starts bulk exports on the payer's server (run them with --with-bulk)", bulk=True)


def _evidence(job: Export, name: str = "export polling (measured)") -> None:
    allure.attach(job.log(), name=name, attachment_type=allure.attachment_type.TEXT)


def _url(target: Target, group_id: str) -> str:
    return f"{target.fhir_base_url}/Group/{group_id}/$davinci-data-export"


def _outsiders(provider_access: ProviderAccess) -> dict[str, str]:
    """Patient id -> role of every configured member who must never be in this provider's export."""
    return {m.patient_id: role for role, m in provider_access.members.items() if role in ("opted_out", "not_attributed")}


def _judge_no_outsiders(http: BackendSession, files: list[bulk.ExportFile], outsiders: dict[str, str],
                        what: str, attributed: str) -> None:
    """No line about an outsider; the attributed member's data is there (the positive control: an export without
    it proves nothing about who was left out)."""
    if not outsiders:
        not_applicable("neither provider_access.members.opted_out nor .not_attributed is configured")
    found = bulk.exported_patients(files)
    if attributed not in found:
        could_not_check(f"positive control failed: {what} holds no line about the attributed member "
                        f"Patient/{attributed}, so the absence of the others proves nothing")
    leaked = {pid: role for pid, role in outsiders.items() if pid in found}
    expect(not leaked, expected=f"{what}: no line about the opted-out or not-attributed member (as Patient, subject, "
                                "patient or beneficiary)",
           actual="; ".join(f"{role} member Patient/{pid} in {found[pid].url}" for pid, role in leaked.items()),
           requirement=["PDEX-PA-06", "PDEX-PA-04"] if any(r == "not_attributed" for r in leaked.values())
           else "PDEX-PA-06",
           exchange=http.http.exchange_for(found[next(iter(leaked))].response) if leaked else None)


@pytest.mark.requirement("PDEX-PA-01", "BULK-01")
@proves(Fault.DATA_EXPORT_WITHOUT_TOKEN)
def test_export_requires_token(pa_session: BackendSession, matched_export: Export, matched_group_id: str,
                               target: Target) -> None:
    """The same kick-off without Authorization: 401 and no job; with the token it was accepted (positive control)."""
    if matched_export.kickoff.status_code != 202:
        could_not_check(f"positive control failed: the export with a token gave HTTP {matched_export.kickoff.status_code}")
    job = kickoff(pa_session.http, _url(target, matched_group_id), None, body=pdex.export_parameters())
    response = job.kickoff
    expect(response.status_code == 401 and not response.headers.get("content-location"),
           expected="HTTP 401 without a token, and no Content-Location (no job started)",
           actual=f"HTTP {response.status_code}, Content-Location {response.headers.get('content-location')!r}",
           exchange=pa_session.http.exchange_for(response))


@pytest.mark.requirement("PDEX-PA-09")
@proves(Fault.OTHER_CLIENT_GROUP_EXPORTABLE)
def test_export_refused_for_other_clients_group(pa_session: BackendSession, matched_export: Export,
                                                matched_group_id: str, provider_access: ProviderAccess,
                                                target: Target) -> None:
    """Another provider's client cannot export this provider's MatchedMembers Group, and this client cannot export
    another provider's attribution Group (provider_access.other_group_id); the owner's export was accepted."""
    if matched_export.kickoff.status_code != 202:
        could_not_check(f"positive control failed: the owner's export gave HTTP {matched_export.kickoff.status_code}")
    if provider_access.other_client is None and provider_access.other_group_id is None:
        not_applicable("neither provider_access.other_client nor provider_access.other_group_id is configured")
    probes: list[tuple[str, str | None, str]] = []
    if provider_access.other_client is not None:
        other = BackendSession(pa_session.http, provider_access.other_client, pa_session.token_endpoint)
        probes.append((f"another provider's client on this provider's Group {matched_group_id}",
                       must_have_token(other.good(), "the other provider's backend client"), matched_group_id))
    if provider_access.other_group_id is not None:
        probes.append((f"this client on another provider's Group {provider_access.other_group_id}",
                       must_have_token(pa_session.good(), "the provider's backend client"),
                       provider_access.other_group_id))
    with expectations() as check:
        for what, token, group_id in probes:
            job = kickoff(pa_session.http, _url(target, group_id), token, body=pdex.export_parameters())
            response = job.kickoff
            check.expect(response.status_code in (401, 403, 404) and not response.headers.get("content-location"),
                         expected=f"{what}: refused (401/403/404), no job",
                         actual=f"HTTP {response.status_code}, Content-Location "
                                f"{response.headers.get('content-location')!r}",
                         exchange=pa_session.http.exchange_for(response))
            if job.status_url:
                pa_session.http.delete(job.status_url, headers=bearer(token))


@pytest.mark.requirement("PDEX-PA-06", "PDEX-PA-04")
@proves(Fault.OPT_OUT_IGNORED, Fault.TREATMENT_RELATIONSHIP_NOT_CHECKED)
def test_export_holds_only_matched_members(pa_session: BackendSession, pa_token: str, matched_export: Export,
                                           provider_access: ProviderAccess) -> None:
    """The MatchedMembers export: the attributed member is there, the opted-out and not-attributed members are in no
    line."""
    _evidence(matched_export)
    files = bulk.read_export(pa_session.http, matched_export, pa_token, "the MatchedMembers export")
    _judge_no_outsiders(pa_session, files, _outsiders(provider_access), "the MatchedMembers export",
                        provider_access.members["attributed"].patient_id)


@pytest.mark.requirement("PDEX-PA-07", "PDEX-PA-06")
@proves(Fault.UNATTRIBUTED_MEMBER_EXPORTED, Fault.OPT_OUT_IGNORED, Fault.TREATMENT_RELATIONSHIP_NOT_CHECKED)
def test_export_ignores_patients_outside_group(pa_session: BackendSession, pa_token: str, matched_group_id: str,
                                               provider_access: ProviderAccess, target: Target) -> None:
    """An export of the MatchedMembers Group whose patient parameter names the attributed member and the members
    outside the Group (opted out, not attributed): only the attributed member's data comes back."""
    outsiders = _outsiders(provider_access)
    if not outsiders:
        not_applicable("neither provider_access.members.opted_out nor .not_attributed is configured")
    attributed = provider_access.members["attributed"].patient_id
    job = pdex.run_export(pa_session.http, pa_token, _url(target, matched_group_id),
                          pdex.export_parameters(patient=[attributed, *outsiders]), provider_access.max_wait_s)
    _evidence(job)
    files = bulk.read_export(pa_session.http, job, pa_token, "the export naming patients outside the Group")
    _judge_no_outsiders(pa_session, files, outsiders, "an export naming patients outside the Group", attributed)


def _permitted(scope: str, rtype: str) -> bool:
    return covered_by(f"system/{rtype}.r", scope_set(scope))


@pytest.mark.requirement("PDEX-PA-11")
@proves(Fault.DATA_EXPORT_TYPE_IGNORED)
def test_export_types_within_scope_and_type(pa_session: BackendSession, pa_token: str, matched_export: Export,
                                            matched_group_id: str, provider_access: ProviderAccess,
                                            target: Target) -> None:
    """Without _type only types the token's scopes cover; with _type=<one type the export held> only that type."""
    scope = pa_session.scopes
    files = bulk.read_export(pa_session.http, matched_export, pa_token, "the MatchedMembers export")
    with expectations() as check:
        outside = sorted({r.get("resourceType") for f in files for r in f.resources
                          if not _permitted(scope, str(r.get("resourceType")))})
        check.expect(not outside, expected=f"only types within the token's scopes ({scope})",
                     actual=f"resources of {outside}", detail=matched_export.log(),
                     exchange=matched_export.manifest_exchange)
        held = sorted({f.type for f in files if f.resources and _permitted(scope, f.type)})
        if not held:
            not_applicable("the MatchedMembers export holds no resources to narrow by _type")
        only = held[-1]
        job = pdex.run_export(pa_session.http, pa_token, _url(target, matched_group_id),
                              pdex.export_parameters(_type=only), provider_access.max_wait_s)
        narrowed = bulk.read_export(pa_session.http, job, pa_token, f"the export with _type={only}")
        seen = sorted({str(r.get("resourceType")) for f in narrowed for r in f.resources})
        check.expect(set(seen) <= {only}, expected=f"_type={only}: only {only} resources",
                     actual=f"resource types {seen}", detail=job.log(), exchange=job.manifest_exchange)


@pytest.mark.requirement("PDEX-PA-12")
@proves(Fault.DATA_EXPORT_SINCE_IGNORED)
def test_export_since_honoured(pa_session: BackendSession, pa_token: str, matched_group_id: str,
                               provider_access: ProviderAccess, target: Target) -> None:
    """An export with _since a year ago: every resource was changed after that instant (meta.lastUpdated later than
    _since); resources without meta.lastUpdated are not judged."""
    since = (datetime.now(UTC) - timedelta(days=365)).replace(microsecond=0)
    job = pdex.run_export(pa_session.http, pa_token, _url(target, matched_group_id),
                          pdex.export_parameters(_since=since.isoformat()),
                          provider_access.max_wait_s)
    _evidence(job)
    files = bulk.read_export(pa_session.http, job, pa_token, "the export with _since")
    dated = [(f, r, _instant(r)) for f in files for r in f.resources]
    judged = [(f, r, at) for f, r, at in dated if at is not None]
    if not judged:
        not_applicable("the delta export holds no resource with meta.lastUpdated to compare with _since")
    old = [(f, r, at) for f, r, at in judged if at <= since]
    expect(not old, expected=f"_since={since.isoformat()}: only resources changed after it",
           actual="; ".join(f"{r.get('resourceType')}/{r.get('id')} lastUpdated {at.isoformat()}"
                            for _f, r, at in old[:5]) + (f" (+{len(old) - 5} more)" if len(old) > 5 else ""),
           exchange=pa_session.http.exchange_for(old[0][0].response) if old else None, detail=job.log())


def _instant(resource: dict[str, object]) -> datetime | None:
    meta = resource.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, dict) else None
    try:
        parsed = datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    return parsed.replace(tzinfo=parsed.tzinfo or UTC) if parsed else None


# Elements of an ExplanationOfBenefit that carry payment or cost-sharing amounts (absent from CARIN's non-financial
# Basis profiles): totals, payment, benefit balances, and adjudication amounts at item, add-item and claim level.
_FINANCIAL = ("total", "payment", "benefitBalance", "adjudication")


def _financial(resource: dict[str, object]) -> list[str]:
    found = [k for k in _FINANCIAL if resource.get(k)]
    for key in ("item", "addItem"):
        for n, item in enumerate(resource.get(key) or [], 1):  # type: ignore[arg-type]
            if isinstance(item, dict) and item.get("adjudication"):
                found.append(f"{key}[{n}].adjudication")
    return found


@pytest.mark.requirement("PDEX-PA-13")
@proves(Fault.COST_SHARING_INCLUDED)
def test_no_cost_sharing_in_export(pa_session: BackendSession, pa_token: str, matched_export: Export,
                                   provider_access: ProviderAccess) -> None:
    """No claim in the Provider Access export carries totals, payment, benefit balances or adjudication amounts."""
    if provider_access.financial_data_agreed:
        not_applicable("provider_access.financial_data_agreed: this provider may receive financial data (§pdex-242)")
    files = bulk.read_export(pa_session.http, matched_export, pa_token, "the MatchedMembers export")
    claims = [(f, r) for f in files for r in f.resources if r.get("resourceType") == "ExplanationOfBenefit"]
    if not claims:
        not_applicable("the export holds no ExplanationOfBenefit to judge")
    bad = [(f, r, _financial(r)) for f, r in claims if _financial(r)]
    expect(not bad, expected="claims without provider remittance or member cost-sharing elements",
           actual="; ".join(f"ExplanationOfBenefit/{r.get('id')}: {', '.join(found)}" for _f, r, found in bad[:5]),
           exchange=pa_session.http.exchange_for(bad[0][0].response) if bad else None)


@pytest.mark.requirement("PDEX-PA-10")
@proves(Fault.EXPORT_TYPE_REJECTED)
def test_export_type_values_accepted(pa_session: BackendSession, pa_token: str, matched_export: Export,
                                     matched_group_id: str, provider_access: ProviderAccess, target: Target) -> None:
    """Each exportType value (provider-delta with _since, as the IG asks of the client) starts a job: 202 with
    Content-Location. Each job is cancelled (DELETE) once accepted."""
    if matched_export.kickoff.status_code != 202:
        could_not_check(f"positive control failed: the provider-download export gave HTTP "
                        f"{matched_export.kickoff.status_code}")
    since = (datetime.now(UTC) - timedelta(days=30)).replace(microsecond=0).isoformat()
    with expectations() as check:
        for export_type in provider_access.export_types:
            extra = {"_since": since} if export_type.endswith("provider-delta") else {}
            job = kickoff(pa_session.http, _url(target, matched_group_id), pa_token,
                          body=pdex.export_parameters(export_type, **extra))
            response = job.kickoff
            check.expect(response.status_code == 202 and bool(job.status_url),
                         expected=f"exportType {export_type}: HTTP 202 with Content-Location",
                         actual=f"HTTP {response.status_code}", exchange=pa_session.http.exchange_for(response))
            if job.status_url:
                pa_session.http.delete(job.status_url, headers=bearer(pa_token))
