"""Bulk Data export: $export on a Group (and on Patient where advertised) by a backend client, kick-off to NDJSON

Bulk Data Access 2.0 §Kick-off, §Status, §Complete status, §File request and §Delete, with SMART Backend Services
tokens: the kick-off needs a token and Prefer: respond-async and answers 202 with Content-Location; the status URL
answers 202 with Retry-After while the job runs and 200 with a manifest when done; files are NDJSON, need the token
when the manifest says so, and hold only the types the token and _type allow; DELETE cancels; another client gets
neither the status nor the files. Waits honour Retry-After and are bounded by bulk.max_wait_s; each check attaches
the measured polling log.
"""

from __future__ import annotations

import json
from typing import Any

import allure
import httpx
import jwt
import pytest

from smart_conformance.checks import (
    could_not_check,
    describe,
    expect,
    expectations,
    not_applicable,
)
from smart_conformance.config import Bulk, Target
from smart_conformance.fhir import Reply, disclosure, tampered_signature, unsigned_jwt
from smart_conformance.markup import landed, new_mark, payload
from smart_conformance.oauth import covered_by, scope_set
from smart_conformance.smart.backend import BackendSession, must_have_token
from smart_conformance.smart.bulk import (
    IN_PROGRESS,
    Export,
    bearer,
    kickoff,
    ndjson_lines,
    patient_export_advertised,
    poll,
    system_export_advertised,
)
from smart_conformance.smart.discovery import Document
from smart_conformance.testplan import Fault, Needs, needs, production_unsafe, proves

pytestmark = production_unsafe("starts bulk exports on the payer's server (run them with --with-bulk)", bulk=True)


def _evidence(export: Export, name: str = "export polling (measured)") -> None:
    allure.attach(export.log(), name=name, attachment_type=allure.attachment_type.TEXT)


def _manifest(export: Export) -> dict[str, Any]:
    _evidence(export)
    if export.status_url is None:
        could_not_check(f"the kick-off gave no status URL (HTTP {export.kickoff.status_code}); "
                        "test_bulk_kickoff_accepted judges that")
    manifest = export.manifest
    if manifest is None:
        final = export.final
        could_not_check(f"the export gave no manifest within the bounded wait ({export.log()}); last answer HTTP "
                        f"{final.status_code if final is not None else '-'}")
    return manifest


def _outputs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    output = manifest.get("output")
    if not isinstance(output, list):
        could_not_check(f"the manifest has no output array ({describe(output)}); test_bulk_manifest_complete "
                        "judges that")
    return [o for o in output if isinstance(o, dict) and isinstance(o.get("url"), str)]


def _get_file(session: BackendSession, url: str, token: str | None) -> httpx.Response:
    if not url.startswith("https://"):
        could_not_check(f"output file URL {url!r} is not https: the harness sends no token there")
    return session.http.get(url, headers={"Accept": "application/fhir+ndjson", **bearer(token)})


def _requires_token(manifest: dict[str, Any]) -> bool:
    value = manifest.get("requiresAccessToken")
    if not isinstance(value, bool):
        could_not_check(f"the manifest's requiresAccessToken is not a boolean ({describe(value)}); "
                        "test_bulk_manifest_complete judges that")
    return value


def _permitted(scope: str, rtype: str) -> bool:
    return covered_by(f"system/{rtype}.r", scope_set(scope))


@pytest.mark.requirement("BULK-02", "PDEX-BULK-01")
@proves(Fault.BULK_CONTENT_LOCATION_MISSING)
def test_bulk_kickoff_accepted(bulk_session: BackendSession, export_job: Export) -> None:
    """Kick-off with a valid token and Prefer: respond-async: 202 Accepted with an absolute https Content-Location."""
    _evidence(export_job)
    response = export_job.kickoff
    location = response.headers.get("content-location")
    expect(response.status_code == 202 and bool(location) and str(location).startswith("https://"),
           expected="HTTP 202 with Content-Location: the absolute https status URL",
           actual=f"HTTP {response.status_code}, Content-Location {location!r}",
           exchange=bulk_session.http.exchange_for(response))


@pytest.mark.requirement("BULK-01")
@proves(Fault.BULK_KICKOFF_WITHOUT_TOKEN)
def test_bulk_kickoff_requires_token(bulk_session: BackendSession, export_job: Export,
                                     group_export_url: str) -> None:
    """The same kick-off without Authorization: 401 and no job; with the token it was accepted (positive control)."""
    if export_job.kickoff.status_code != 202:
        could_not_check(f"positive control failed: the kick-off with a token gave HTTP {export_job.kickoff.status_code}")
    response = bulk_session.http.get(group_export_url, headers={"Accept": "application/fhir+json",
                                                                "Prefer": "respond-async"})
    expect(response.status_code == 401 and not response.headers.get("content-location"),
           expected="HTTP 401 without a token, and no Content-Location (no job started)",
           actual=f"HTTP {response.status_code}, Content-Location {response.headers.get('content-location')!r}",
           exchange=bulk_session.http.exchange_for(response))


@pytest.mark.requirement("BULK-03")
@proves(Fault.BULK_RETRY_AFTER_MISSING)
@needs(Needs.BULK_STATUS_URL)
def test_bulk_status_gives_retry_after(bulk_session: BackendSession, export_job: Export) -> None:
    """While the export runs the status URL answers 202 (or 429) with a Retry-After the client can honour."""
    _manifest(export_job)
    running = [p for p in export_job.polls if p.status in IN_PROGRESS]
    if not running:
        not_applicable("the export was complete at the first status request: no in-progress answer to judge")
    bad = [p for p in running if not (p.retry_after or "").strip()]
    expect(not bad, expected="Retry-After on every in-progress status answer (202/429)",
           actual=f"{len(bad)} of {len(running)} in-progress answers without Retry-After",
           exchange=bulk_session.http.exchange_for(bad[0].response) if bad else None, detail=export_job.log())


@pytest.mark.requirement("BULK-04")
@proves(Fault.BULK_MANIFEST_INCOMPLETE)
@needs(Needs.BULK_STATUS_URL)
def test_bulk_manifest_complete(export_job: Export) -> None:
    """The finished export: HTTP 200 JSON manifest with transactionTime, request, requiresAccessToken (boolean),
    output (type and url each) and error (array)."""
    manifest = _manifest(export_job)
    problems = []
    for name, kind in (("transactionTime", str), ("request", str), ("requiresAccessToken", bool),
                       ("output", list), ("error", list)):
        if not isinstance(manifest.get(name), kind):
            problems.append(f"{name} = {describe(manifest.get(name))}")
    for item in manifest.get("output") or []:
        if not (isinstance(item, dict) and isinstance(item.get("type"), str) and isinstance(item.get("url"), str)):
            problems.append(f"output item without type/url: {describe(item)}")
    expect(not problems, expected="a manifest with transactionTime, request, requiresAccessToken (boolean), "
                                  "output [{type, url}] and error []",
           actual="; ".join(problems), detail=export_job.log(), exchange=export_job.manifest_exchange)


@pytest.mark.requirement("BULK-05")
@proves(Fault.BULK_FILES_UNPROTECTED)
@needs(Needs.BULK_STATUS_URL, Needs.BULK_TOKEN_FLAG)
def test_bulk_files_require_token(bulk_session: BackendSession, bulk_token: str, export_job: Export) -> None:
    """requiresAccessToken true: an output file without the token is refused (401/403), with it served (control)."""
    manifest = _manifest(export_job)
    if not _requires_token(manifest):
        not_applicable("the manifest says requiresAccessToken false: the files are meant to be fetched without it")
    outputs = _outputs(manifest)
    if not outputs:
        not_applicable("the export has no output files")
    url = outputs[0]["url"]
    control = _get_file(bulk_session, url, bulk_token)
    if control.status_code != 200:
        could_not_check(f"positive control failed: the file with the token gave HTTP {control.status_code}")
    response = _get_file(bulk_session, url, None)
    expect(response.status_code in (401, 403) and not ndjson_lines(response.text if response.status_code == 200
                                                                   else ""),
           expected="HTTP 401/403 for an output file requested without the token (requiresAccessToken: true)",
           actual=f"HTTP {response.status_code}", exchange=bulk_session.http.exchange_for(response))


@pytest.mark.requirement("BULK-06")
@proves(Fault.BULK_TYPE_FILTER_IGNORED)
@needs(Needs.BULK_STATUS_URL, Needs.BULK_TOKEN_FLAG)
def test_bulk_output_within_scope_and_type(bulk_session: BackendSession, bulk_token: str, export_job: Export,
                                           bulk_settings: Bulk, group_export_url: str) -> None:
    """Without _type the output holds only types the token's scopes cover; with _type=<one granted type> only that
    type (manifest entries and every NDJSON line)."""
    manifest = _manifest(export_job)
    scope = bulk_session.scopes
    outside = sorted({o.get("type") for o in _outputs(manifest) if not _permitted(scope, str(o.get("type")))})
    expect(not outside, expected=f"only types within the token's scopes ({scope})",
           actual=f"output of {', '.join(map(str, outside))}", detail=export_job.log(),
           exchange=export_job.manifest_exchange)
    wanted = [t for t in (bulk_settings.resource_types or ()) if _permitted(scope, t)] or \
        [str(o.get("type")) for o in _outputs(manifest)]
    if not wanted:
        not_applicable("no resource type to narrow the export to")
    only = wanted[-1]
    narrowed = poll(bulk_session.http, kickoff(bulk_session.http, group_export_url, bulk_token, {"_type": only}),
                    bulk_token, bulk_settings.max_wait_s)
    narrowed_manifest = _manifest(narrowed)
    types = sorted({str(o.get("type")) for o in _outputs(narrowed_manifest)})
    expect(set(types) <= {only}, expected=f"_type={only}: output of {only} only", actual=f"output types {types}",
           detail=narrowed.log(), exchange=narrowed.manifest_exchange)
    for item in _outputs(narrowed_manifest):
        response = _get_file(bulk_session, item["url"], bulk_token if _requires_token(narrowed_manifest) else None)
        # Lines that do not parse are test_bulk_ndjson_parses's finding; here only the types of those that do count.
        seen = ({_line_type(line) for line in ndjson_lines(response.text)} - {None}
                if response.status_code == 200 else set())
        expect(seen <= {only}, expected=f"_type={only}: every NDJSON line a {only}",
               actual=f"resource types in {item['url']}: {sorted(map(str, seen))}",
               exchange=bulk_session.http.exchange_for(response))


def _line_type(line: str) -> str | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value.get("resourceType") if isinstance(value, dict) else None


@pytest.mark.requirement("BULK-07")
@proves(Fault.BULK_NDJSON_INVALID)
@needs(Needs.BULK_STATUS_URL, Needs.BULK_TOKEN_FLAG)
def test_bulk_ndjson_parses(bulk_session: BackendSession, bulk_token: str, export_job: Export) -> None:
    """Every output file is served 200 as NDJSON: each line one JSON resource of the type the manifest names."""
    manifest = _manifest(export_job)
    token = bulk_token if _requires_token(manifest) else None
    outputs = _outputs(manifest)
    if not outputs:
        not_applicable("the export has no output files")
    for item in outputs:
        response = _get_file(bulk_session, item["url"], token)
        exchange = bulk_session.http.exchange_for(response)
        expect(response.status_code == 200, expected=f"HTTP 200 for {item['url']}",
               actual=f"HTTP {response.status_code}", exchange=exchange)
        lines = ndjson_lines(response.text)
        bad = [n for n, line in enumerate(lines, 1) if _line_type(line) != item.get("type")]
        expect(not bad and "ndjson" in response.headers.get("content-type", ""),
               expected=f"application/fhir+ndjson, every line one {item.get('type')} resource as JSON",
               actual=f"Content-Type {response.headers.get('content-type')!r}; {len(bad)} of {len(lines)} lines "
                      f"not a {item.get('type')} JSON object (first: line {bad[0] if bad else '-'})",
               exchange=exchange)


@pytest.mark.requirement("BULK-08")
@proves(Fault.BULK_DELETE_IGNORED)
@needs(Needs.BULK_STATUS_URL)
def test_bulk_delete_cancels_export(bulk_session: BackendSession, bulk_token: str, bulk_settings: Bulk,
                                    group_export_url: str) -> None:
    """DELETE on a new job's status URL: 202, and afterwards the status URL never serves a manifest (4xx)."""
    job = kickoff(bulk_session.http, group_export_url, bulk_token)
    if job.status_url is None:
        could_not_check(f"the kick-off gave no status URL (HTTP {job.kickoff.status_code})")
    deleted = bulk_session.http.delete(job.status_url, headers=bearer(bulk_token))
    expect(deleted.status_code == 202, expected="HTTP 202 Accepted for DELETE on the status URL",
           actual=f"HTTP {deleted.status_code}", exchange=bulk_session.http.exchange_for(deleted))
    after = poll(bulk_session.http, job, bulk_token, bulk_settings.max_wait_s)
    _evidence(after, "status polling after DELETE (measured)")
    final = after.final
    if final is None or after.timed_out:
        could_not_check(f"the status URL still answered in-progress after the bounded wait:\n{after.log()}")
    expect(400 <= final.status_code < 500, expected="after DELETE the status URL answers 4xx (404/410), no manifest",
           actual=f"HTTP {final.status_code}", exchange=bulk_session.http.exchange_for(final), detail=after.log())


def _refusal_shape(response: httpx.Response) -> str:
    """Status and OperationOutcome issue codes: what a client can compare between two refusals."""
    try:
        body = response.json()
    except ValueError:
        body = None
    issues = body.get("issue") if isinstance(body, dict) else None
    codes = sorted(str(i.get("code")) for i in issues or [] if isinstance(i, dict))
    return f"HTTP {response.status_code} {', '.join(codes) or '(no OperationOutcome)'}"


@pytest.mark.requirement("BULK-09", "FHIR-SEC-08")
@proves(Fault.BULK_STATUS_ANY_CLIENT, Fault.BULK_STATUS_ORACLE)
@needs(Needs.BULK_STATUS_URL, Needs.BULK_TOKEN_FLAG)
def test_bulk_status_other_client_refused(bulk_session: BackendSession, bulk_token: str, export_job: Export,
                                          bulk_settings: Bulk) -> None:
    """Another backend client's token gets neither this client's job status nor its files (its own token did:
    positive control)."""
    manifest = _manifest(export_job)
    if bulk_settings.other_client is None:
        not_applicable("no bulk.other_client configured (a second backend client to play the foreign client)")
    other = BackendSession(bulk_session.http, bulk_settings.other_client, bulk_session.token_endpoint)
    other_token = must_have_token(other.good(), "the other backend client")
    if export_job.status_url is None:
        could_not_check("the kick-off gave no status URL")
    status = bulk_session.http.get(export_job.status_url, headers={"Accept": "application/json",
                                                                   **bearer(other_token)})
    expect(status.status_code in (401, 403, 404),
           expected="another client's token refused at this job's status URL (401/403/404)",
           actual=f"HTTP {status.status_code}", requirement="BULK-09", exchange=bulk_session.http.exchange_for(status))
    made_up = f"{export_job.status_url.rstrip('/').rsplit('/', 1)[0]}/smart-conformance-no-such-job"
    unknown = bulk_session.http.get(made_up, headers={"Accept": "application/json", **bearer(other_token)})
    expect(_refusal_shape(status) == _refusal_shape(unknown),
           expected="another client's job refused exactly like a job that does not exist (no existence oracle)",
           actual=f"{_refusal_shape(status)} vs {_refusal_shape(unknown)}", requirement="FHIR-SEC-08",
           exchange=bulk_session.http.exchange_for(status))
    outputs = _outputs(manifest)
    if outputs and _requires_token(manifest):
        response = _get_file(bulk_session, outputs[0]["url"], other_token)
        expect(response.status_code in (401, 403, 404),
               expected="another client's token refused for this job's output file (401/403/404)",
               actual=f"HTTP {response.status_code}", requirement="BULK-09",
               exchange=bulk_session.http.exchange_for(response))


@pytest.mark.requirement("BULK-02", "BULK-06")
@proves(Fault.BULK_PATIENT_EXPORT_SCOPE_IGNORED, Fault.BULK_TYPE_FILTER_IGNORED, Fault.BULK_CONTENT_LOCATION_MISSING)
@needs(Needs.CAPABILITY_STATEMENT, Needs.BULK_TOKEN_FLAG)
def test_patient_export_where_advertised(bulk_session: BackendSession, bulk_token: str, bulk_settings: Bulk,
                                         capability_statement: Document, target: Target) -> None:
    """Where the CapabilityStatement offers Patient/$export: the kick-off (Prefer: respond-async, no _type) is 202
    with Content-Location, and the finished export holds only types within the token's scopes (manifest entries and
    every NDJSON line). Not applicable where it is not advertised."""
    if not capability_statement.ok:
        could_not_check(f"the CapabilityStatement could not be read (HTTP {capability_statement.status}), so whether "
                        "Patient/$export is offered is unknown")
    if not patient_export_advertised(capability_statement.json):
        not_applicable("the CapabilityStatement offers no Patient/$export (operation export on Patient)")
    job = kickoff(bulk_session.http, f"{target.fhir_base_url}/Patient/$export", bulk_token)
    started = job.kickoff
    expect(started.status_code == 202 and bool(job.status_url), requirement="BULK-02",
           expected="Patient/$export kick-off: 202 Accepted with a Content-Location header",
           actual=f"HTTP {started.status_code}, Content-Location {started.headers.get('content-location')!r}",
           exchange=bulk_session.http.exchange_for(started))
    done = poll(bulk_session.http, job, bulk_token, bulk_settings.max_wait_s)
    manifest = _manifest(done)
    scope = bulk_session.scopes
    with expectations() as check:
        outside = sorted({str(o.get("type")) for o in _outputs(manifest) if not _permitted(scope, str(o.get("type")))})
        check.expect(not outside, expected=f"Patient/$export output only of types within the token's scopes ({scope})",
                     actual=f"output of {', '.join(outside)}", requirement="BULK-06", detail=done.log(),
                     exchange=done.manifest_exchange)
        for item in _outputs(manifest):
            response = _get_file(bulk_session, item["url"], bulk_token if _requires_token(manifest) else None)
            seen = ({_line_type(line) for line in ndjson_lines(response.text)} - {None}
                    if response.status_code == 200 else set())
            beyond = sorted(t for t in map(str, seen) if not _permitted(scope, t))
            check.expect(not beyond, expected="every NDJSON line of a type within the token's scopes",
                         actual=f"resource types {beyond} in {item['url']}", requirement="BULK-06",
                         exchange=bulk_session.http.exchange_for(response))


@pytest.mark.requirement("FHIR-SEC-13", "HTTP-HYG-05", "FHIR-SEC-03")
@proves(Fault.BULK_KICKOFF_JUNK_500)
def test_bulk_kickoff_refuses_junk_cleanly(bulk_session: BackendSession, bulk_token: str, export_job: Export,
                                           group_export_url: str) -> None:
    """Markup, injection-shaped and 8 KB values in each kick-off parameter (``_type``, ``_since``, ``_outputFormat``,
    ``_typeFilter``) are answered without a server error, without the value as live markup, and without a stack trace
    or version banner. A kick-off the server accepts anyway is cancelled at once (DELETE), so nothing is left running.
    Positive control: the Group kick-off with valid parameters was accepted in this run."""
    if export_job.kickoff.status_code != 202:
        could_not_check(f"no positive control: the valid Group kick-off answered HTTP {export_job.kickoff.status_code}")
    mark = new_mark()
    values = {"markup": payload(mark), "SQL-shaped": "x' OR '1'='1' --", "8 KB": "A" * 8192}
    with expectations() as check:
        for name in ("_type", "_since", "_outputFormat", "_typeFilter"):
            for kind, value in values.items():
                job = kickoff(bulk_session.http, group_export_url, bulk_token, {name: value})
                reply, label = job.kickoff, f"kick-off with {kind} {name}"
                if reply.status_code == 202 and job.status_url:
                    bulk_session.http.delete(job.status_url, headers=bearer(bulk_token))  # leave nothing running
                exchange = bulk_session.http.exchange_for(reply)
                check.expect(reply.status_code < 500, expected=f"{label}: 202 or a 4xx, not a server error",
                             actual=f"HTTP {reply.status_code}", requirement="FHIR-SEC-13", exchange=exchange)
                for where in landed(reply, mark):
                    check.fail(expected=f"{label}: the value never echoed as markup", actual=where,
                               requirement="HTTP-HYG-05", exchange=exchange)
                found = disclosure(Reply(reply, exchange))
                check.expect(found is None, expected=f"{label}: no stack trace, framework or version",
                             actual=found, requirement="FHIR-SEC-03", exchange=exchange)


def _forgeries(token: str) -> dict[str, str]:
    """Bearer values a status or file URL must refuse: made up, the real token with its signature changed, and an
    unsigned (``alg: none``) copy of its claims."""
    forged = {"made-up": "smart-conformance-made-up-token", "tampered signature": tampered_signature(token)}
    try:
        forged["alg none"] = unsigned_jwt(jwt.decode(token, options={"verify_signature": False}))
    except jwt.PyJWTError:
        pass  # an opaque token has no claims to copy
    return forged


@pytest.mark.requirement("BULK-05", "BULK-09")
@proves(Fault.BULK_FILES_SIGNATURE_NOT_CHECKED, Fault.TAMPERED_SIGNATURE_ACCEPTED, Fault.ALG_NONE_ACCEPTED)
@needs(Needs.BULK_STATUS_URL, Needs.BULK_TOKEN_FLAG)
def test_bulk_status_and_files_refuse_forged_tokens(bulk_session: BackendSession, bulk_token: str,
                                                    export_job: Export) -> None:
    """The job's status URL and an output file (where the manifest says files need the token) refuse a made-up
    token, the client's own token with a changed signature and an unsigned copy of it: the export's URLs are checked
    as carefully as the FHIR API. Positive control: both answered the real token in this run."""
    manifest = _manifest(export_job)
    outputs = _outputs(manifest) if _requires_token(manifest) else []
    urls = {"status URL": export_job.status_url or ""}
    if outputs:
        control = _get_file(bulk_session, outputs[0]["url"], bulk_token)
        if control.status_code != 200:
            could_not_check(f"positive control failed: the file with the real token gave HTTP {control.status_code}")
        urls["output file"] = outputs[0]["url"]
    with expectations() as check:
        for what, url in urls.items():
            for kind, forged in _forgeries(bulk_token).items():
                reply = bulk_session.http.get(url, headers={"Accept": "application/json", **bearer(forged)})
                served = reply.status_code == 200 and bool(reply.content)
                check.expect(reply.status_code in (401, 403, 404) and not served,
                             expected=f"the {what} with a {kind} token refused (401/403/404), nothing served",
                             actual=f"HTTP {reply.status_code}" + (" with content" if served else ""),
                             requirement="BULK-05" if what == "output file" else "BULK-09",
                             exchange=bulk_session.http.exchange_for(reply))


@pytest.mark.requirement("SAFETY-09")
@proves(Fault.SYSTEM_EXPORT_SERVED)
@needs(Needs.CAPABILITY_STATEMENT)
def test_unadvertised_exports_refused(bulk_session: BackendSession, bulk_token: str, export_job: Export,
                                      capability_statement: Document, target: Target) -> None:
    """An export the CapabilityStatement does not offer (system-level ``$export``, ``Patient/$export``) is not
    started for the backend client: a way out for every member's data that nobody reviewed. One it accepts anyway is
    cancelled at once. Positive control: the advertised Group kick-off was accepted in this run."""
    if not capability_statement.ok:
        could_not_check(f"the CapabilityStatement could not be read (HTTP {capability_statement.status})")
    if export_job.kickoff.status_code != 202:
        could_not_check(f"no positive control: the Group kick-off answered HTTP {export_job.kickoff.status_code}")
    statement, base = capability_statement.json, target.fhir_base_url
    probes = {label: url for label, url, offered in (
        ("system-level $export", f"{base}/$export", system_export_advertised(statement)),
        ("Patient/$export", f"{base}/Patient/$export", patient_export_advertised(statement))) if not offered}
    if not probes:
        not_applicable("the CapabilityStatement offers both system-level $export and Patient/$export")
    with expectations() as check:
        for label, url in probes.items():
            job = kickoff(bulk_session.http, url, bulk_token)
            if job.kickoff.status_code == 202 and job.status_url:
                bulk_session.http.delete(job.status_url, headers=bearer(bulk_token))  # leave nothing running
            check.expect(job.kickoff.status_code != 202, expected=f"{label} (not in the CapabilityStatement) refused",
                         actual=f"HTTP {job.kickoff.status_code}: the export was started",
                         exchange=bulk_session.http.exchange_for(job.kickoff))
