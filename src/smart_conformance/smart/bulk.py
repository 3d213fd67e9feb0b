"""The client side of a Bulk Data export (Bulk Data Access 2.0): kick-off, status polling that honours Retry-After
within a bounded wait (measured, for the evidence), manifest and NDJSON files, and whose data the files hold (the
patients each line is about, for the isolation verdicts of the export suites).

Waiting here is the protocol, not a test shortcut: the server says when to come back (Retry-After) and the client
must not poll faster. Each wait is capped (at most :data:`MAX_SINGLE_WAIT` seconds, and never past the target's
``bulk.max_wait_s``), and every poll is logged with its time so a report shows how long the export took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from smart_conformance.http import NO_BACKOFF, Exchange, RecordingClient, exchange_of

MAX_SINGLE_WAIT = 10.0
DEFAULT_WAIT = 1.0
IN_PROGRESS = (202, 429)


@dataclass
class Poll:
    status: int
    retry_after: str | None
    at: float  # seconds since the kick-off
    response: httpx.Response = field(repr=False)


@dataclass
class Export:
    """One export job as the client saw it."""

    kickoff: httpx.Response
    status_url: str | None
    polls: list[Poll] = field(default_factory=list)
    waited_s: float = 0.0
    timed_out: bool = False

    @property
    def final(self) -> httpx.Response | None:
        return self.polls[-1].response if self.polls else None

    @property
    def manifest(self) -> dict[str, Any] | None:
        final = self.final
        if final is None or final.status_code != 200:
            return None
        try:
            body = final.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    @property
    def manifest_exchange(self) -> Exchange | None:
        """The last status request and its answer (the manifest, when the job finished): the evidence of a check on
        the manifest or on what it lists."""
        return exchange_of(self.final)

    def log(self) -> str:
        """The polling history, for the evidence."""
        lines = [f"kick-off: HTTP {self.kickoff.status_code}, status URL {self.status_url or '(none)'}"]
        lines += [f"  +{p.at:6.2f}s HTTP {p.status} Retry-After={p.retry_after or '-'}" for p in self.polls]
        lines.append(f"waited {self.waited_s:.2f}s in total" + (" (gave up: bounded wait reached)"
                                                                 if self.timed_out else ""))
        return "\n".join(lines)


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def kickoff(http: RecordingClient, url: str, token: str | None, params: dict[str, str] | None = None, *,
            body: dict[str, Any] | None = None) -> Export:
    """GET kick-off with query parameters, or POST with a FHIR Parameters ``body`` (operations such as PDex
    $davinci-data-export that are POSTed)."""
    headers = {"Accept": "application/fhir+json", "Prefer": "respond-async", **bearer(token)}
    if body is not None:
        response = http.post(url, params=params or {}, json=body,
                             headers={**headers, "Content-Type": "application/fhir+json"})
    else:
        response = http.get(url, params=params or {}, headers=headers)
    location = response.headers.get("content-location") if response.status_code == 202 else None
    return Export(kickoff=response, status_url=location)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as delay-seconds (the HTTP-date form is read as 'soon')."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    return DEFAULT_WAIT if value else None


def poll(http: RecordingClient, export: Export, token: str | None, max_wait: float, *,
         stop_on: tuple[int, ...] = ()) -> Export:
    """Poll the status URL until it answers something other than 202/429 (or a status in ``stop_on``), honouring
    Retry-After, for at most ``max_wait`` seconds in total."""
    if export.status_url is None:
        return export
    began = time.monotonic()
    while True:
        # This loop is the back-off: a 429 here is an in-progress answer the status checks judge (each poll kept,
        # with its Retry-After), so the client hands it back instead of waiting it out itself.
        response = http.get(export.status_url, headers={"Accept": "application/json", **bearer(token)},
                            extensions=NO_BACKOFF)
        at = time.monotonic() - began
        export.polls.append(Poll(response.status_code, response.headers.get("retry-after"), at, response))
        if response.status_code not in IN_PROGRESS or response.status_code in stop_on:
            break
        delay = min(retry_after_seconds(response.headers.get("retry-after")) or DEFAULT_WAIT, MAX_SINGLE_WAIT)
        if at + delay > max_wait:
            export.timed_out = True
            break
        time.sleep(delay)  # the server asked the client to wait this long (Retry-After), bounded above
    export.waited_s = time.monotonic() - began
    return export


def ndjson_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


PATIENT_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"


SYSTEM_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"


def system_export_advertised(statement: Any) -> bool:
    """Does a CapabilityStatement offer the system-level ``$export``: the export OperationDefinition, or an operation
    named ``export``, at rest level."""
    for rest in (statement.get("rest") or []) if isinstance(statement, dict) else []:
        for operation in (rest.get("operation") or []) if isinstance(rest, dict) else []:
            if isinstance(operation, dict) and (str(operation.get("definition") or "").split("|")[0] == SYSTEM_EXPORT
                                                or operation.get("name") == "export"):
                return True
    return False


def patient_export_advertised(statement: Any) -> bool:
    """Does a CapabilityStatement offer ``Patient/$export`` (Bulk Data 2.0 §Server Capability Documentation)? The
    ``export`` operation on the Patient resource, or the patient-export OperationDefinition anywhere in rest."""
    if not isinstance(statement, dict):
        return False
    for rest in statement.get("rest") or []:
        if not isinstance(rest, dict):
            continue
        places = [(None, rest)] + [(r.get("type"), r) for r in rest.get("resource") or [] if isinstance(r, dict)]
        for rtype, place in places:
            for operation in place.get("operation") or []:
                if not isinstance(operation, dict):
                    continue
                definition = str(operation.get("definition") or "")
                if definition.split("|")[0] == PATIENT_EXPORT or (rtype == "Patient"
                                                                  and operation.get("name") == "export"):
                    return True
    return False


# --- whose data an export holds ----------------------------------------------------------------------------------
_SUBJECT_PATHS = ("subject", "patient", "beneficiary")


def patients_referenced(resource: dict[str, Any]) -> set[str]:
    """Patient ids a resource is about: a Patient's own id, and its subject / patient / beneficiary references."""
    out: set[str] = set()
    if resource.get("resourceType") == "Patient" and resource.get("id"):
        out.add(str(resource["id"]))
    for path in _SUBJECT_PATHS:
        value = resource.get(path)
        for ref in value if isinstance(value, list) else [value]:
            text = str(ref.get("reference", "")) if isinstance(ref, dict) else ""
            if "Patient/" in text:
                out.add(text.split("Patient/", 1)[1].split("/", 1)[0])
    return out


def parse_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in ndjson_lines(text):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


@dataclass
class ExportFile:
    type: str
    url: str
    response: httpx.Response
    resources: list[dict[str, Any]]


def read_export(http: RecordingClient, job: Export, token: str | None, what: str) -> list[ExportFile]:
    """Every output file of a finished export with its resources; *could not check* when the job gave no manifest
    (the export checks of the bulk_export suite judge the protocol itself)."""
    from smart_conformance.checks import could_not_check

    if job.status_url is None:
        could_not_check(f"{what}: the kick-off gave no status URL (HTTP {job.kickoff.status_code}: "
                        f"{job.kickoff.text[:200]})")
    manifest = job.manifest
    if manifest is None:
        could_not_check(f"{what}: no manifest within the bounded wait:\n{job.log()}")
    needs_token = manifest.get("requiresAccessToken") is not False
    files = []
    for item in manifest.get("output") or []:
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            continue
        if not item["url"].startswith("https://"):
            could_not_check(f"{what}: output file URL {item['url']!r} is not https: the harness sends no token there")
        got = http.get(item["url"], headers={"Accept": "application/fhir+ndjson",
                                             **bearer(token if needs_token else None)})
        if got.status_code != 200:
            could_not_check(f"{what}: output file {item['url']} answered HTTP {got.status_code}")
        files.append(ExportFile(str(item.get("type")), item["url"], got, parse_lines(got.text)))
    return files


def exported_patients(files: Iterable[ExportFile]) -> dict[str, ExportFile]:
    """Each patient id the export's lines are about, with the first file that holds it."""
    out: dict[str, ExportFile] = {}
    for f in files:
        for resource in f.resources:
            for pid in patients_referenced(resource):
                out.setdefault(pid, f)
    return out
