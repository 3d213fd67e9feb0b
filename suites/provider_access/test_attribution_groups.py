"""Provider Access v1: payer-maintained attribution Groups

PDex Provider Access v1 §Attribution List and §Da Vinci Data Export Operation - PDex Provider Use Case: the payer
keeps each provider's attribution list as a Group, leaves opted-out members out of it, restricts Group search to the
Groups of the provider's own account, and an export of the list re-checks opt-out when it runs (the same exclusions as
v2). Only for a target that names its attribution Groups (provider_access.attribution_group_ids).
"""

from __future__ import annotations

from typing import Any

import allure
import pytest

from smart_conformance.checks import could_not_check, expectations, not_applicable
from smart_conformance.config import ProviderAccess, Target
from smart_conformance.smart import bulk, pdex
from smart_conformance.smart.backend import BackendSession
from smart_conformance.testplan import Fault, production_unsafe, proves


def _groups(provider_access: ProviderAccess) -> tuple[str, ...]:
    if not provider_access.attribution_group_ids:
        not_applicable("no provider_access.attribution_group_ids configured (v1 attribution Groups)")
    return provider_access.attribution_group_ids


def _get(session: BackendSession, url: str, token: str, params: dict[str, str] | None = None) -> Any:
    return session.http.get(url, params=params or {}, headers={"Accept": "application/fhir+json",
                                                               "Authorization": f"Bearer {token}"})


@pytest.mark.requirement("PDEX-PA-08")
@proves(Fault.GROUP_SEARCH_UNRESTRICTED)
def test_group_search_restricted_to_own_groups(pa_session: BackendSession, pa_token: str,
                                               provider_access: ProviderAccess, target: Target) -> None:
    """GET Group/{own attribution Group} works (positive control); GET Group returns none of another provider's
    Groups, and GET Group/{another provider's Group} is refused (401/403/404)."""
    own = _groups(provider_access)
    other = provider_access.other_group_id
    if other is None:
        not_applicable("no provider_access.other_group_id configured (another provider's attribution Group)")
    control = _get(pa_session, f"{target.fhir_base_url}/Group/{own[0]}", pa_token)
    if control.status_code != 200:
        could_not_check(f"positive control failed: GET Group/{own[0]} (this provider's own Group) gave HTTP "
                        f"{control.status_code}")
    search = _get(pa_session, f"{target.fhir_base_url}/Group", pa_token)
    read = _get(pa_session, f"{target.fhir_base_url}/Group/{other}", pa_token)
    with expectations() as check:
        body = search.json() if search.status_code == 200 else {}
        ids = [str((e.get("resource") or {}).get("id")) for e in (body.get("entry") or []) if isinstance(e, dict)] \
            if isinstance(body, dict) else []
        check.expect(other not in ids, expected=f"GET Group: no Group of another provider ({other})",
                     actual=f"Group ids {ids}", exchange=pa_session.http.exchange_for(search))
        check.expect(read.status_code in (401, 403, 404), expected=f"GET Group/{other} refused (401/403/404)",
                     actual=f"HTTP {read.status_code}", exchange=pa_session.http.exchange_for(read))


@pytest.mark.requirement("PDEX-PA-06")
@proves(Fault.OPT_OUT_IGNORED)
@production_unsafe("starts bulk exports on the payer's server (run them with --with-bulk)", bulk=True)
def test_attribution_export_excludes_opted_out(pa_session: BackendSession, pa_token: str,
                                               provider_access: ProviderAccess, target: Target) -> None:
    """The export of each attribution Group holds no line about the opted-out or the not-attributed member (a Group of
    opted-out members, where the payer shows one, exports nothing of them); at least one export holds member data
    (the positive control)."""
    outsiders = {m.patient_id: role for role, m in provider_access.members.items()
                 if role in ("opted_out", "not_attributed")}
    groups = _groups(provider_access)
    if not outsiders:
        not_applicable("neither provider_access.members.opted_out nor .not_attributed is configured")
    held: set[str] = set()
    with expectations() as check:
        for group_id in groups:
            job = pdex.run_export(pa_session.http, pa_token,
                                  f"{target.fhir_base_url}/Group/{group_id}/$davinci-data-export",
                                  pdex.export_parameters(), provider_access.max_wait_s)
            allure.attach(job.log(), name=f"export of {group_id} (measured)",
                          attachment_type=allure.attachment_type.TEXT)
            found = bulk.exported_patients(bulk.read_export(pa_session.http, job, pa_token, f"the export of {group_id}"))
            held |= set(found)
            leaked = {pid: role for pid, role in outsiders.items() if pid in found}
            check.expect(not leaked, expected=f"the export of attribution Group {group_id}: no opted-out or "
                                              "not-attributed member in any line",
                         actual="; ".join(f"{role} member Patient/{pid} in {found[pid].url}"
                                          for pid, role in leaked.items()),
                         exchange=pa_session.http.exchange_for(found[next(iter(leaked))].response) if leaked else None)
        if not held and not check.failures:
            could_not_check("no attribution Group's export holds any member's data: the absence of the opted-out and "
                            "not-attributed members proves nothing")
