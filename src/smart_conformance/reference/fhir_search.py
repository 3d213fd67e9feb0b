"""Search and representation for the reference FHIR API: parameters, _include/_revinclude, paging, ``_format``.

Search policy (documented for target authors, beside ``fhir.py``'s access policy):
- Unknown search parameters: 400 OperationOutcome, unless the request says ``Prefer: handling=lenient``; then they
  are ignored and left out of the self link, which names only the parameters applied (FHIR R4 search.html, errors).
- A parameter with no value (``patient=``): 400 OperationOutcome naming it.
- Bad ``_count``/``_offset`` and unknown ``_include`` values: 400 OperationOutcome.
- ``_format``: the JSON forms are served as FHIR JSON; anything else (XML included: this server has no XML) is 406.
- Interactions not in the CapabilityStatement (history, vread, ...) are refused by ``fhir.py``'s dispatch.
"""

from __future__ import annotations

import traceback
import uuid
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from smart_conformance.reference.context import Context
from smart_conformance.reference.data import Resource
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.fhir import (
    INCLUDES,
    Principal,
    Refused,
    _entry,
    _in_compartment,
    _not_found,
    _now,
    _ref_id,
    _refs,
    _require_scope,
    fhir_json,
    outcome,
)

JSON_FORMATS = ("json", "application/json", "application/fhir+json", "application/json+fhir")
# Search parameters per type (beyond the common ones) and the element a reference parameter matches.
SEARCH_PARAMS: dict[str, dict[str, str | None]] = {
    "Patient": {"_id": None},
    "Coverage": {"_id": None, "patient": "beneficiary", "beneficiary": "beneficiary"},
    "ExplanationOfBenefit": {"_id": None, "patient": "patient"},
    "Organization": {"_id": None},
    "Practitioner": {"_id": None},
    "RelatedPerson": {"_id": None, "patient": "patient"},
}
COMMON_PARAMS = {"_count", "_offset", "_include", "_revinclude", "_format", "_pretty", "_total"}
DEFAULT_COUNT, MAX_COUNT = 20, 100


def check_format(ctx: Context, request: Request) -> None:
    """``_format`` overrides Accept (http.html): JSON forms are served, anything else is 406 (there is no XML)."""
    fmt = request.query_params.get("_format")
    if fmt is not None and fmt.split(";")[0].strip() not in JSON_FORMATS:
        if ctx.faults.active(Fault.FORMAT_IGNORED_HTML):  # the defect: _format ignored, the browse page served
            raise Refused(HTMLResponse("<html><body><h1>Reference payer</h1><p>Browse the FHIR API: "
                                       f"{request.url.path}</p></body></html>"))
        raise Refused(outcome(ctx, 406, "not-supported", "only JSON is supported (_format=json)"))


def _int_param(ctx: Context, params: Any, name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if name == "_count" and ctx.faults.active(Fault.ERROR_STACK_TRACE):
        try:
            return int(raw)
        except Exception:  # noqa: BLE001  # the defect: an unhandled error rendered with its traceback
            raise Refused(PlainTextResponse(traceback.format_exc(), status_code=500)) from None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise Refused(outcome(ctx, 400, "invalid", f"{name} must be a non-negative integer"))
    return int(raw)


def _lenient(request: Request) -> bool:
    prefer = request.headers.get("prefer", "").replace(" ", "").lower()
    return "handling=lenient" in prefer.split(";") or "handling=lenient" in prefer.split(",")


def search(ctx: Context, request: Request, who: Principal, rtype: str, params: Any) -> Response:
    _require_scope(ctx, who, rtype, "s")
    allowed = SEARCH_PARAMS[rtype]
    chains = {name: chain for name in params if name not in allowed and (chain := _chain(name, allowed))}
    applied = set(allowed) | COMMON_PARAMS | set(chains)
    for name in params:
        base = name.split(":", 1)[0]
        if name not in applied and base != "access_token" and not _lenient(request):
            raise Refused(outcome(ctx, 400, "not-supported", f"unknown search parameter {name!r} for {rtype}"))
    for name in params:
        if name in allowed and len(params.getlist(name)) > 1:
            raise Refused(outcome(ctx, 400, "not-supported", f"{name} may appear only once"))
        if (name in allowed or name in chains) and not params[name].strip():
            if ctx.faults.active(Fault.MISSING_VALUE_500):  # the defect: the empty value reaches the query unchecked
                raise Refused(PlainTextResponse("Internal Server Error", status_code=500))
            raise Refused(outcome(ctx, 400, "invalid", f"search parameter {name!r} has no value"))
    count = min(_int_param(ctx, params, "_count", DEFAULT_COUNT), MAX_COUNT)
    offset = _int_param(ctx, params, "_offset", 0)
    includes = _parse_includes(ctx, params.getlist("_include"), rtype, reverse=False)
    revincludes = _parse_includes(ctx, params.getlist("_revinclude"), rtype, reverse=True)

    leak = ctx.faults.active(Fault.COMPARTMENT_LEAK_SEARCH)
    chain_leak = bool(chains) and ctx.faults.active(Fault.COMPARTMENT_LEAK_CHAINED)
    # Either fault: every resource of the type matches (the paging one only past the first page).
    unfiltered = ctx.faults.active(Fault.SEARCH_UNFILTERED) or (
        offset > 0 and ctx.faults.active(Fault.PAGING_LEAKS_OTHER_MEMBERS))
    matches = []
    for resource in ctx.data.all(rtype):
        if unfiltered:
            matches.append(resource)
            continue
        if not (_in_compartment(ctx, who, resource) or (leak and _names_patient(params, allowed)) or chain_leak):
            continue
        ignore_id = ctx.faults.active(Fault.SEARCH_PARAM_IGNORED)  # the defect: _id advertised, never applied
        if "_id" in params and not ignore_id and resource["id"] not in params["_id"].split(","):
            continue
        if not all(_matches_ref(resource, allowed[n], params[n]) for n in params if allowed.get(n)):
            continue
        if not all(_matches_chain(ctx, resource, path, leaf, params[n]) for n, (path, leaf) in chains.items()):
            continue
        matches.append(resource)
    page = matches[offset:offset + count]
    extra = _included(ctx, who, page, includes, revincludes)
    listed = applied | (set(params) if ctx.faults.active(Fault.LENIENT_SELF_LINK_LISTS_IGNORED) else set())
    kept = [(k, v) for k, v in params.multi_items() if k in listed and k not in ("_offset", "_count", "access_token")]
    bundle = _bundle(ctx, rtype, kept, matches, page, extra, offset, count)
    return fhir_json(ctx, bundle)


def history(ctx: Context, who: Principal, rtype: str, rid: str) -> Response:
    """Instance history, served only under the unadvertised-interaction fault: one version, the current one."""
    _require_scope(ctx, who, rtype, "r")
    resource = ctx.data.get(rtype, rid)
    if resource is None or not _in_compartment(ctx, who, resource):
        return _not_found(ctx, rtype, rid)
    entry = {**_entry(ctx, resource, "match"), "request": {"method": "PUT", "url": f"{rtype}/{rid}"},
             "response": {"status": "200"}}
    entry.pop("search")
    return fhir_json(ctx, {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": _now()},
                           "type": "history", "total": 1, "entry": [entry]})


def _chain(name: str, allowed: dict[str, str | None]) -> tuple[str, str] | None:
    """``patient.identifier`` → (element, 'identifier') when ``patient`` is a reference parameter of the type."""
    ref, _, leaf = name.partition(".")
    path = allowed.get(ref)
    return (path, leaf) if path and leaf in ("identifier", "name") else None


def _matches_chain(ctx: Context, resource: Resource, path: str, leaf: str, value: str) -> bool:
    """The referenced Patient matches ``identifier`` (system|value or value) or ``name`` (starts-with, any part)."""
    wanted = value.lower()
    for ref in _refs(resource, path):
        patient = ctx.data.get("Patient", _ref_id(ref, "Patient")) if ref.startswith("Patient/") else None
        if patient is None:
            continue
        for ident in (patient.get("identifier") or []) if leaf == "identifier" else []:
            full = f"{ident.get('system', '')}|{ident.get('value', '')}".lower()
            if wanted in (full, str(ident.get("value", "")).lower()):
                return True
        for name in (patient.get("name") or []) if leaf == "name" else []:
            parts = [name.get("family", ""), *name.get("given", []), name.get("text", "")]
            if any(str(p).lower().startswith(wanted) for p in parts if p):
                return True
    return False


def _names_patient(params: Any, allowed: dict[str, str | None]) -> bool:
    return any(params.get(n) for n in ("patient", "beneficiary") if n in allowed)


def _matches_ref(resource: Resource, path: str | None, value: str) -> bool:
    wanted = {f"Patient/{_ref_id(v, 'Patient')}" for v in value.split(",")}
    return bool(path) and any(ref in wanted for ref in _refs(resource, path or ""))


def _parse_includes(ctx: Context, values: list[str], rtype: str, *, reverse: bool) -> list[tuple[str, str]]:
    out = []
    for value in values:
        src, _, param = value.partition(":")
        param = param.split(":", 1)[0]
        spec = INCLUDES.get((src, param))
        ok = spec is not None and ((spec[1] == rtype) if reverse else (src == rtype))
        if not ok:
            kind = "_revinclude" if reverse else "_include"
            raise Refused(outcome(ctx, 400, "not-supported", f"unsupported {kind} {value!r} for {rtype}"))
        out.append((src, param))
    return out


def _included(ctx: Context, who: Principal, page: list[Resource], includes: list[tuple[str, str]],
              revincludes: list[tuple[str, str]]) -> list[Resource]:
    """Resources pulled in by _include/_revinclude, filtered by scope and by the patient compartment."""
    seen = {(r["resourceType"], r["id"]) for r in page}
    found: list[Resource] = []
    for src, param in includes:
        path, target = INCLUDES[(src, param)]
        for resource in page:
            for ref in _refs(resource, path):
                kind, _, rid = ref.partition("/")
                hit = ctx.data.get(kind, rid) if kind == target else None
                if hit is not None:
                    found.append(hit)
    page_refs = {f"{r['resourceType']}/{r['id']}" for r in page}
    for src, param in revincludes:
        path, _target = INCLUDES[(src, param)]
        for candidate in ctx.data.all(src):
            if any(ref in page_refs for ref in _refs(candidate, path)):
                found.append(candidate)
    out = []
    leak = ctx.faults.active(Fault.COMPARTMENT_LEAK_INCLUDE)
    for resource in found:
        key = (resource["resourceType"], resource["id"])
        if key in seen or not who.can(resource["resourceType"], "r"):
            continue
        if not leak and not _in_compartment(ctx, who, resource):
            continue
        seen.add(key)
        out.append(resource)
    return out


def _bundle(ctx: Context, rtype: str, kept: list[tuple[str, str]], matches: list[Resource], page: list[Resource],
            extra: list[Resource], offset: int, count: int) -> dict[str, Any]:
    """The searchset; its links carry ``kept``: the parameters applied (FHIR-SRCH-01), never an ignored one."""

    def link(relation: str, at: int) -> dict[str, str]:
        query = urlencode([*kept, ("_count", str(count)), ("_offset", str(at))])
        return {"relation": relation, "url": f"{ctx.fhir_base}/{rtype}?{query}"}

    links = [link("self", offset)]
    if offset + count < len(matches) and count > 0:
        links.append(link("next", offset + count))
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    entries = [_entry(ctx, r, "match") for r in page] + [_entry(ctx, r, "include") for r in extra]
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": _now()},
            "type": "searchset", "total": len(matches), "link": links, "entry": entries}
