"""A small Bulk Data export (Bulk Data Access 2.0) for backend clients: Group and Patient ``$export``.

Policy (documented for target authors):
- ``GET /fhir/Group/{id}/$export`` (the one Group, ``provider-attributed-members``, holds every member) and
  ``GET /fhir/Patient/$export`` need a valid system/ access token (401 without one, 403 for a member token) and
  ``Prefer: respond-async`` (400 without). ``_type`` narrows the types; a type outside the token's scopes or not
  supported is refused (403 / 400: SMART Backend Services asks for a failure on explicit requests beyond the scopes).
- Kick-off answers 202 with ``Content-Location: {fhir}/bulk-status/{job}``. The job is ready about a second later;
  until then the status URL answers 202 with ``Retry-After: 1`` and ``X-Progress`` (under the bulk-status-429
  variant the job takes 2.5 s and every poll after the first gets 429 Too Many Requests with Retry-After).
- Complete: 200 with the manifest (``transactionTime``, ``request``, ``requiresAccessToken: true``, ``output`` with
  ``type``/``url``/``count``, ``error: []``). Files at ``{fhir}/bulk-files/{job}/{Type}.ndjson`` need the same
  token (the client that started the job), served as ``application/fhir+ndjson``.
- Status and files of a job are served only to the client that started it: any other client gets 404 (the same as an
  unknown job). ``DELETE`` on the status URL cancels: 202, then the job is gone (404).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from smart_conformance.reference import fhir
from smart_conformance.reference import scopes as scope_rules
from smart_conformance.reference.context import Context, ctx_of
from smart_conformance.reference.data import PATIENT_LINK, SUPPORTED_TYPES
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.variants import (
    BULK_FILES_WITHOUT_TOKEN,
    BULK_STATUS_429,
    RETRY_AFTER_HTTP_DATE,
    ActiveVariants,
)

GROUP_ID = "provider-attributed-members"
JOB_SECONDS = 1.0  # how long a job "runs" before its manifest is ready
JOB_SECONDS_429 = 2.5  # bulk-status-429: long enough that the polls after the first one see 429
RETRY_AFTER = 1
NDJSON = "application/fhir+ndjson"


@dataclass
class Job:
    job_id: str
    client_id: str
    request: str
    types: list[str]
    patients: list[str] | None  # None: every patient (system-level export)
    ready_at: float
    transaction_time: str
    polls: int = 0
    source: Callable[[str], list[dict[str, Any]]] | None = None  # another export's resources (reference/pdex.py)


@dataclass
class Jobs:
    jobs: dict[str, Job] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_JOBS: dict[int, Jobs] = {}
_JOBS_LOCK = threading.Lock()


def _jobs(ctx: Context) -> Jobs:
    with _JOBS_LOCK:
        return _JOBS.setdefault(id(ctx.store), Jobs())


def _system_principal(ctx: Context, request: Request) -> fhir.Principal:
    who = fhir.authenticate(ctx, request)
    if who.patient is not None or not scope_rules.has_system_scopes(who.scope.split()):
        raise fhir.Refused(fhir.outcome(ctx, 403, "forbidden", "bulk export needs a system/ access token"))
    return who


def _kickoff_principal(ctx: Context, request: Request) -> fhir.Principal:
    if ctx.faults.active(Fault.BULK_KICKOFF_WITHOUT_TOKEN) and not request.headers.get("authorization"):
        return fhir.Principal(client_id="", scope=" ".join(f"system/{t}.rs" for t in SUPPORTED_TYPES), patient=None)
    return _system_principal(ctx, request)


async def group_export(request: Request) -> Response:
    ctx = ctx_of(request)
    if request.path_params.get("group_id") != GROUP_ID:
        return fhir.outcome(ctx, 404, "not-found", "Group is not known")
    return _kickoff(ctx, request, patients=None)


def start_system_export(ctx: Context, request: Request) -> Response:
    """A system-level kick-off, served only under the system-export-served fault (it is not advertised)."""
    return _kickoff(ctx, request, patients=None)


async def patient_export(request: Request) -> Response:
    return _kickoff(ctx_of(request), request, patients=None)


def _kickoff(ctx: Context, request: Request, patients: list[str] | None) -> Response:
    try:
        who = _kickoff_principal(ctx, request)
    except fhir.Refused as refused:
        return refused.response
    if "respond-async" not in request.headers.get("prefer", ""):
        return fhir.outcome(ctx, 400, "invalid", "bulk export requires the header Prefer: respond-async")
    since = request.query_params.get("_since")
    if since and ctx.faults.active(Fault.BULK_KICKOFF_JUNK_500):
        try:  # the defect: the parameter parsed unchecked, and the crash shown
            datetime.fromisoformat(since)
        except ValueError:
            return PlainTextResponse(traceback.format_exc(), status_code=500)
    asked = [t for t in request.query_params.get("_type", "").split(",") if t]
    for rtype in asked:
        if rtype not in SUPPORTED_TYPES:
            return fhir.outcome(ctx, 400, "not-supported", f"resource type {rtype!r} is not supported")
    permitted = [t for t in SUPPORTED_TYPES if scope_rules.permits(who.scope, t, "r")]
    if ctx.faults.active(Fault.BULK_PATIENT_EXPORT_SCOPE_IGNORED) and request.url.path.endswith("/Patient/$export"):
        types = asked or list(SUPPORTED_TYPES)  # the defect: Patient-level export ignores the token's scopes
    elif ctx.faults.active(Fault.BULK_TYPE_FILTER_IGNORED):
        types = list(SUPPORTED_TYPES)  # the defect: neither _type nor the token's scopes limit the output
    else:
        beyond = [t for t in asked if t not in permitted]
        if beyond:
            return fhir.outcome(ctx, 403, "forbidden", f"the token's scopes do not cover {', '.join(beyond)}")
        types = asked or permitted
    now = time.time()
    job = Job(job_id=secrets.token_urlsafe(18), client_id=who.client_id, request=str(request.url), types=types,
              patients=patients, ready_at=now + (JOB_SECONDS_429 if _variants(ctx).active(BULK_STATUS_429)
                                                  else JOB_SECONDS),
              transaction_time=datetime.now(UTC).isoformat(timespec="seconds"))
    jobs = _jobs(ctx)
    with jobs.lock:
        jobs.jobs[job.job_id] = job
    headers = {} if ctx.faults.active(Fault.BULK_CONTENT_LOCATION_MISSING) else {
        "Content-Location": f"{ctx.fhir_base}/bulk-status/{job.job_id}"}
    return Response(status_code=202, headers={**headers, "Cache-Control": "no-store"})


def start_job(ctx: Context, client_id: str, request_url: str, types: list[str],
              source: Callable[[str], list[dict[str, Any]]]) -> Job:
    """Register a job whose output another module computed (the PDex $davinci-data-export); status, files and
    DELETE are then this module's."""
    job = Job(job_id=secrets.token_urlsafe(18), client_id=client_id, request=request_url, types=types, patients=None,
              ready_at=time.time() + (JOB_SECONDS_429 if _variants(ctx).active(BULK_STATUS_429) else JOB_SECONDS),
              transaction_time=datetime.now(UTC).isoformat(timespec="seconds"), source=source)
    jobs = _jobs(ctx)
    with jobs.lock:
        jobs.jobs[job.job_id] = job
    return job


def _own_job(ctx: Context, request: Request, job_id: str, *, authenticate: bool = True) -> Job:
    """The caller's job, or a 404 that looks the same for unknown jobs and other clients' jobs."""
    jobs = _jobs(ctx)
    with jobs.lock:
        job = jobs.jobs.get(job_id)
    if not authenticate:
        if job is None:
            raise fhir.Refused(fhir.outcome(ctx, 404, "not-found", "no such export job"))
        return job
    who = _system_principal(ctx, request)
    if job is None or (job.client_id != who.client_id and not ctx.faults.active(Fault.BULK_STATUS_ANY_CLIENT)):
        if job is not None and ctx.faults.active(Fault.BULK_STATUS_ORACLE):  # the defect: the refusal says it exists
            raise fhir.Refused(fhir.outcome(ctx, 403, "forbidden", "this export job belongs to another client"))
        raise fhir.Refused(fhir.outcome(ctx, 404, "not-found", "no such export job"))
    return job


async def status(request: Request) -> Response:
    ctx = ctx_of(request)
    try:
        job = _own_job(ctx, request, request.path_params["job_id"])
    except fhir.Refused as refused:
        return refused.response
    if request.method == "DELETE":
        if not ctx.faults.active(Fault.BULK_DELETE_IGNORED):
            jobs = _jobs(ctx)
            with jobs.lock:
                jobs.jobs.pop(job.job_id, None)
        return Response(status_code=202)
    job.polls += 1
    if time.time() < job.ready_at:
        headers = {"X-Progress": "exporting", "Cache-Control": "no-store"}
        if not ctx.faults.active(Fault.BULK_RETRY_AFTER_MISSING):
            headers["Retry-After"] = (formatdate(time.time() + RETRY_AFTER, usegmt=True)
                                      if _variants(ctx).active(RETRY_AFTER_HTTP_DATE) else str(RETRY_AFTER))
        if _variants(ctx).active(BULK_STATUS_429) and job.polls > 1:
            return Response(status_code=429, headers=headers)
        return Response(status_code=202, headers=headers)
    manifest: dict[str, Any] = {
        "transactionTime": job.transaction_time,
        "request": job.request,
        "requiresAccessToken": not _variants(ctx).active(BULK_FILES_WITHOUT_TOKEN),
        "output": [{"type": t, "url": f"{ctx.fhir_base}/bulk-files/{job.job_id}/{t}.ndjson",
                    "count": len(_resources(ctx, job, t))} for t in job.types],
        "error": [],
    }
    if ctx.faults.active(Fault.BULK_MANIFEST_INCOMPLETE):
        del manifest["requiresAccessToken"]
    return Response(json.dumps(manifest), status_code=200, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def _variants(ctx: Context) -> ActiveVariants:
    return ctx.variants


def _resources(ctx: Context, job: Job, rtype: str) -> list[dict[str, Any]]:
    if job.source is not None:
        return job.source(rtype)
    out = []
    for resource in ctx.data.all(rtype):
        owner = ctx.data.patient_of(resource)
        if job.patients is None or owner is None or owner in job.patients or rtype not in (*PATIENT_LINK, "Patient"):
            out.append(resource)
    return out


def _unverified_owner(ctx: Context, request: Request) -> Job | None:
    """The defect of bulk-files-signature-not-checked: the job is served to any JWT naming its client, signed or not."""
    if not ctx.faults.active(Fault.BULK_FILES_SIGNATURE_NOT_CHECKED):
        return None
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    jobs = _jobs(ctx)
    with jobs.lock:
        job = jobs.jobs.get(request.path_params["job_id"])
    return job if job is not None and claims.get("client_id") == job.client_id else None


async def file(request: Request) -> Response:
    ctx = ctx_of(request)
    open_files = _variants(ctx).active(BULK_FILES_WITHOUT_TOKEN) or ctx.faults.active(Fault.BULK_FILES_UNPROTECTED)
    try:
        job = _own_job(ctx, request, request.path_params["job_id"],
                       authenticate=not (open_files and not request.headers.get("authorization")))
    except fhir.Refused as refused:
        job = _unverified_owner(ctx, request)  # None unless the bulk-files-signature-not-checked fault is on
        if job is None:
            return refused.response
    name = request.path_params["name"]
    rtype = name.removesuffix(".ndjson")
    if rtype not in job.types or time.time() < job.ready_at:
        return fhir.outcome(ctx, 404, "not-found", "no such file")
    resources = _resources(ctx, job, rtype)
    if ctx.faults.active(Fault.BULK_NDJSON_INVALID):
        body = json.dumps(resources, indent=2)  # the defect: one pretty-printed JSON array, not NDJSON
    else:
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in resources)
    cache = "public, max-age=86400" if ctx.faults.active(Fault.BULK_OUTPUT_CACHEABLE) else "no-store"  # the defect
    return Response(body, status_code=200, media_type=NDJSON, headers={"Cache-Control": cache})
