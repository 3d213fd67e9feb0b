"""Search and representation for the reference FHIR API: parameters, _include/_revinclude, paging, ``_format``.

Search policy (documented for target authors, beside ``fhir.py``'s access policy):
- Unknown search parameters: 400 OperationOutcome, unless the request says ``Prefer: handling=lenient``; then they
  are ignored and left out of the self link, which names only the parameters applied (FHIR R4 search.html, errors).
- A parameter with no value (``patient=``): 400 OperationOutcome naming it.
- Bad ``_count``/``_offset`` and unknown ``_include`` values: 400 OperationOutcome.
- Paging: ``_count`` defaults to 20 (2 under ``paged-by-default``); page links carry the applied parameters with
  ``_count``/``_offset``, or under ``opaque-page-cursors`` only the id of a search kept for the token's client and
  patient (followed by anyone else, unknown or expired: 404). Every page is filtered by the token's compartment.
- ``_format``: the JSON forms are served as FHIR JSON; anything else (XML included: this server has no XML) is 406.
- Interactions not in the CapabilityStatement (history, vread, ...) are refused by ``fhir.py``'s dispatch.
"""

from __future__ import annotations

import html
import json
import traceback
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlencode

from starlette.datastructures import QueryParams
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
from smart_conformance.reference.variants import (
    FORMAT_HTML_RENDERED,
    INCLUDES_NOT_SUPPORTED,
    OPAQUE_PAGE_CURSORS,
    PAGED_BY_DEFAULT,
)

JSON_FORMATS = ("json", "application/json", "application/fhir+json", "application/json+fhir")
HTML_FORMATS = ("html", "text/html")  # http.html: "In addition, the values html and text/html are allowed"
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
PAGED_COUNT = 2  # the paged-by-default variant's page size
MAX_CURSORS = 1000  # opaque-page-cursors: searches kept for their page links, oldest dropped first


def _wants_html(request: Request) -> bool:
    return (request.query_params.get("_format") or "").strip().lower() in HTML_FORMATS


def check_format(ctx: Context, request: Request) -> None:
    """``_format`` overrides Accept (http.html): JSON forms are served, anything else is 406 (there is no XML).
    Under format-html-rendered, html and text/html are served too, as :func:`as_html` renders them."""
    fmt = request.query_params.get("_format")
    if fmt is not None and fmt.split(";")[0].strip() not in JSON_FORMATS:
        if _wants_html(request) and ctx.faults.active(Fault.FORMAT_HTML_REFLECTS_QUERY):
            # the defect: an HTML rendering that echoes the request's query string, decoded and unescaped
            raise Refused(HTMLResponse("<html><body><h1>Reference payer</h1><p>Results for "
                                       f"{unquote_plus(request.url.query)}</p></body></html>"))
        if _wants_html(request) and ctx.variants.active(FORMAT_HTML_RENDERED):
            return
        if ctx.faults.active(Fault.FORMAT_IGNORED_HTML):  # the defect: _format ignored, the browse page served
            raise Refused(HTMLResponse("<html><body><h1>Reference payer</h1><p>Browse the FHIR API: "
                                       f"{request.url.path}</p></body></html>"))
        raise Refused(outcome(ctx, 406, "not-supported", "only JSON is supported (_format=json)"))


def as_html(ctx: Context, request: Request, response: Response) -> Response:
    """format-html-rendered: a FHIR JSON answer to ``_format=html`` shown as a page, as HAPI's browsable view does,
    with the request URL and the resource escaped."""
    media = response.headers.get("content-type", "")
    if not (ctx.variants.active(FORMAT_HTML_RENDERED) and _wants_html(request) and "json" in media):
        return response
    body = bytes(response.body).decode("utf-8")
    try:
        body = json.dumps(json.loads(body), indent=2)
    except ValueError:
        pass
    page = (f"<!DOCTYPE html><html><head><title>FHIR response</title></head><body><h1>Reference payer</h1>"
            f"<p>Request: <code>{html.escape(str(request.url))}</code></p><pre>{html.escape(body)}</pre></body></html>")
    kept = {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}
    return HTMLResponse(page, status_code=response.status_code, headers=kept)


def _int_param(ctx: Context, params: Any, name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    crash = name == "_count" and ctx.faults.active(Fault.ERROR_STACK_TRACE)
    if name in ("_offset", "_getpagesoffset") and ctx.faults.active(Fault.PAGING_OFFSET_500):
        crash = True  # the defect: a page link's offset trusted to be the number the server wrote there
    if crash:
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
    cursor = _kept_search(ctx, rtype, params)
    if cursor is not None:  # opaque-page-cursors: the kept search, at the link's offset
        at = _int_param(ctx, params, "_getpagesoffset", 0)
        params = QueryParams([*cursor.params, ("_count", str(cursor.count)), ("_offset", str(at))])
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
    default = PAGED_COUNT if ctx.variants.active(PAGED_BY_DEFAULT) else DEFAULT_COUNT
    count = min(_int_param(ctx, params, "_count", default), MAX_COUNT)
    offset = _int_param(ctx, params, "_offset", 0)
    # A later page belongs to whoever made the search: served inside the token's compartment like the first, and a
    # kept search only to the client and patient that made it.
    unbound = offset > 0 and ctx.faults.active(Fault.PAGING_CURSOR_NOT_BOUND)  # the defect: later pages trust the link
    if cursor is not None and cursor.owner != _owner(who) and not unbound:
        raise Refused(_unknown_page(ctx))
    includes = _parse_includes(ctx, params.getlist("_include"), rtype, reverse=False)
    revincludes = _parse_includes(ctx, params.getlist("_revinclude"), rtype, reverse=True)

    leak = ctx.faults.active(Fault.COMPARTMENT_LEAK_SEARCH)
    chain_leak = bool(chains) and ctx.faults.active(Fault.COMPARTMENT_LEAK_CHAINED)
    # Either fault: every resource of the type matches (the paging one only past the first page).
    unfiltered = ctx.faults.active(Fault.SEARCH_UNFILTERED) or (
        offset > 0 and ctx.faults.active(Fault.PAGING_LEAKS_OTHER_MEMBERS))
    reachable = unbound or (leak and _names_patient(params, allowed)) or chain_leak
    matches = [r for r in ctx.data.all(rtype) if unfiltered or (
        (reachable or _in_compartment(ctx, who, r)) and _matches_params(ctx, r, params, allowed, chains))]
    total = len(matches)
    if ctx.faults.active(Fault.SEARCH_TOTAL_COUNTS_OTHERS):  # the defect: counted before the compartment filter
        total = sum(1 for r in ctx.data.all(rtype) if _matches_params(ctx, r, params, allowed, chains))
    page = matches[offset:offset + count]
    extra = _included(ctx, who, page, includes, revincludes)
    listed = applied | (set(params) if ctx.faults.active(Fault.LENIENT_SELF_LINK_LISTS_IGNORED) else set())
    kept = [(k, v) for k, v in params.multi_items() if k in listed and k not in ("_offset", "_count", "access_token")]
    key = cursor.key if cursor is not None else None
    if key is None and ctx.variants.active(OPAQUE_PAGE_CURSORS) and count > 0 and (
            offset > 0 or offset + count < len(matches)):
        key = _keep(_Cursor(str(uuid.uuid4()), rtype, tuple(kept), count, _owner(who)))
    bundle = _bundle(ctx, rtype, kept, (total, len(matches)), page, extra, offset, count, cursor=key,
                     resumed=cursor is not None)
    return fhir_json(ctx, bundle)


def _matches_params(ctx: Context, resource: Resource, params: Any, allowed: dict[str, str | None],
                    chains: dict[str, tuple[str, str]]) -> bool:
    """The resource matches the search's _id, reference and chained parameters (the compartment aside)."""
    ignore_id = ctx.faults.active(Fault.SEARCH_PARAM_IGNORED)  # the defect: _id advertised, never applied
    if "_id" in params and not ignore_id and resource["id"] not in params["_id"].split(","):
        return False
    if not all(_matches_ref(resource, allowed[n], params[n]) for n in params if allowed.get(n)):
        return False
    return all(_matches_chain(ctx, resource, path, leaf, params[n]) for n, (path, leaf) in chains.items())


# --- opaque-page-cursors: searches kept server-side, their page links only an id ----------------------------------
@dataclass(frozen=True)
class _Cursor:
    key: str
    rtype: str
    params: tuple[tuple[str, str], ...]  # the parameters applied, without _count/_offset
    count: int
    owner: tuple[str, str | None]  # (client_id, patient) of the token that made the search


_CURSORS: dict[str, _Cursor] = {}


def _owner(who: Principal) -> tuple[str, str | None]:
    return who.client_id, who.patient


def _keep(cursor: _Cursor) -> str:
    _CURSORS[cursor.key] = cursor
    while len(_CURSORS) > MAX_CURSORS:
        del _CURSORS[next(iter(_CURSORS))]
    return cursor.key


def _kept_search(ctx: Context, rtype: str, params: Any) -> _Cursor | None:
    """The search a ``_getpages`` link names (None when the request is a search of its own); an unknown or expired
    id, or one of another type, is 404."""
    key = params.get("_getpages") if ctx.variants.active(OPAQUE_PAGE_CURSORS) else None
    if key is None:
        return None
    cursor = _CURSORS.get(key)
    if cursor is None or cursor.rtype != rtype:
        raise Refused(_unknown_page(ctx))
    return cursor


def _unknown_page(ctx: Context) -> Response:
    """One answer for a page id that is unknown, expired or another principal's: it reveals nothing."""
    return outcome(ctx, 404, "not-found", "this page of search results is not known (it may have expired)")


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
    if values and ctx.variants.active(INCLUDES_NOT_SUPPORTED):
        kind = "_revinclude" if reverse else "_include"
        raise Refused(outcome(ctx, 400, "not-supported", f"{kind} is not supported by this server"))
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
    ignore_scopes = ctx.faults.active(Fault.INCLUDE_IGNORES_SCOPES)  # the defect: includes skip the scope check
    for resource in found:
        key = (resource["resourceType"], resource["id"])
        if key in seen or not (who.can(resource["resourceType"], "r") or ignore_scopes):
            continue
        if not leak and not _in_compartment(ctx, who, resource):
            continue
        seen.add(key)
        out.append(resource)
    return out


def _bundle(ctx: Context, rtype: str, kept: list[tuple[str, str]], counts: tuple[int, int], page: list[Resource],
            extra: list[Resource], offset: int, count: int, *, cursor: str | None = None,
            resumed: bool = False) -> dict[str, Any]:
    """The searchset (``counts``: its total, and the matches its links page through); its links carry ``kept``: the
    parameters applied (FHIR-SRCH-01), never an ignored one; or, with a kept search (``cursor``), only its id."""
    total, found = counts

    def link(relation: str, at: int) -> dict[str, str]:
        if cursor is not None and (relation != "self" or resumed):
            query = urlencode([("_getpages", cursor), ("_getpagesoffset", str(at))])
        else:
            query = urlencode([*kept, ("_count", str(count)), ("_offset", str(at))])
        return {"relation": relation, "url": f"{ctx.fhir_base}/{rtype}?{query}"}

    links = [link("self", offset)]
    if offset + count < found and count > 0:
        links.append(link("next", offset + count))
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    entries = [_entry(ctx, r, "match") for r in page] + [_entry(ctx, r, "include") for r in extra]
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": _now()},
            "type": "searchset", "total": total, "link": links, "entry": entries}
