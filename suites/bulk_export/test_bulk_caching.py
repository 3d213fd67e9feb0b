"""Bulk Data answers and caches

OWASP ASVS 4.0.3 V8.2.1 with RFC 9111, for Bulk Data Access 2.0 §Complete status and §File request: the manifest of
a finished export and the NDJSON files it lists hold many members' data at once, so they tell every cache not to
keep them (``no-store``, or ``private``/``no-cache`` with nothing that invites a shared cache back). Files a server
hands out at signed URLs (``requiresAccessToken: false``) are judged alike: a cache that keeps them serves them to
anyone who has the URL after it expired.
"""

from __future__ import annotations

import httpx
import pytest

from smart_conformance.checks import could_not_check, expectations
from smart_conformance.oauth import cacheable
from smart_conformance.smart.backend import BackendSession
from smart_conformance.smart.bulk import Export, bearer
from smart_conformance.testplan import Fault, Needs, needs, production_unsafe, proves

pytestmark = production_unsafe("starts bulk exports on the payer's server (run them with --with-bulk)", bulk=True)


@pytest.mark.requirement("ASVS-CACHE-01")
@proves(Fault.BULK_OUTPUT_CACHEABLE)
@needs(Needs.BULK_STATUS_URL)
def test_bulk_manifest_and_files_not_cached(bulk_session: BackendSession, bulk_token: str,
                                            export_job: Export) -> None:
    """The manifest of the Group export and the first output file each say no cache may keep them."""
    manifest, final = export_job.manifest, export_job.final
    if manifest is None or final is None:
        could_not_check(f"the Group export gave no manifest ({export_job.log()}); test_bulk_manifest_complete "
                        "judges that")
    answers: list[tuple[str, httpx.Response]] = [("the manifest", final)]
    outputs = [o["url"] for o in manifest.get("output") or [] if isinstance(o, dict) and isinstance(o.get("url"), str)]
    if outputs:  # an export with no files leaves the manifest to judge
        if not outputs[0].startswith("https://"):
            could_not_check(f"output file URL {outputs[0]!r} is not https: the harness sends no token there")
        token = bulk_token if manifest.get("requiresAccessToken") is not False else None
        response = bulk_session.http.get(outputs[0], headers={"Accept": "application/fhir+ndjson", **bearer(token)})
        if response.status_code != 200:
            could_not_check(f"the first output file answered HTTP {response.status_code}: no file to judge")
        answers.append(("the first output file", response))
    with expectations() as check:  # each answer is its own finding
        for label, answer in answers:
            found = cacheable(answer.headers.get("cache-control"))
            check.expect(found is None, expected=f"{label}: Cache-Control no-store (or private / no-cache)",
                         actual=f"HTTP {answer.status_code}: {found}",
                         exchange=bulk_session.http.exchange_for(answer))
