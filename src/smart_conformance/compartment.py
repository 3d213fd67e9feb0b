"""Reading FHIR answers in terms of whose data they hold: the patient compartment, seen from outside.

Isolation, scope and payer-data checks all ask the same questions of a reply: is it a refusal, which resources does
it carry, and which member does each belong to. Kept here so every suite answers them the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from smart_conformance.config import Target
from smart_conformance.fhir import Reply

# Element(s) that tie a resource to its patient, for the CARIN types (R4 Patient compartment definitions).
PATIENT_LINKS: dict[str, tuple[str, ...]] = {
    "Coverage": ("beneficiary", "subscriber", "policyHolder"),
    "ExplanationOfBenefit": ("patient",),
    "RelatedPerson": ("patient",),
    "Claim": ("patient",),
    "ClaimResponse": ("patient",),
}
# Reference data every member may see (no patient compartment).
SHARED_TYPES = frozenset({"Organization", "Practitioner", "PractitionerRole", "Location", "OperationOutcome"})


def ref_id(reference: str | None, rtype: str) -> str | None:
    """``Patient/x``, ``https://…/Patient/x`` or ``Patient/x/_history/2`` → ``x`` (None when another type)."""
    if not isinstance(reference, str) or f"{rtype}/" not in reference:
        return None
    tail = reference.rsplit(f"{rtype}/", 1)[1]
    return tail.split("/", 1)[0] or None


def patients_of(resource: dict[str, Any]) -> set[str]:
    """Patient ids a resource belongs to (its own id for a Patient); empty for shared reference data."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return {str(resource.get("id"))}
    found: set[str] = set()
    for element in PATIENT_LINKS.get(str(rtype), ()):
        value = resource.get(element)
        for item in value if isinstance(value, list) else [value]:
            pid = ref_id(item.get("reference"), "Patient") if isinstance(item, dict) else None
            if pid:
                found.add(pid)
    return found


def entries(body: Any, *, mode: str | None = None) -> list[dict[str, Any]]:
    """Resources in a Bundle (optionally only those with ``search.mode`` == mode)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return []
    out = []
    for entry in body.get("entry") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            continue
        if mode is not None and (entry.get("search") or {}).get("mode", "match") != mode:
            continue
        out.append(entry["resource"])
    return out


def resources_in(reply: Reply) -> list[dict[str, Any]]:
    """Every resource a reply carries: the resource itself, or a Bundle's entries (nested Bundles opened)."""
    body = reply.json()
    return list(_walk(body))


def _walk(body: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        return
    if body["resourceType"] == "Bundle":
        for entry in body.get("entry") or []:
            if isinstance(entry, dict):
                yield from _walk(entry.get("resource"))
    elif body["resourceType"] != "OperationOutcome":
        yield body


def foreign(resources: Iterable[dict[str, Any]], allowed: set[str]) -> list[str]:
    """``Type/id`` of each resource that belongs to a patient outside ``allowed`` (or to no-one, if not shared)."""
    out = []
    for resource in resources:
        rtype = str(resource.get("resourceType"))
        if rtype in SHARED_TYPES:
            continue
        owners = patients_of(resource)
        if not owners or not owners <= allowed:
            out.append(f"{rtype}/{resource.get('id')} (patient {', '.join(sorted(owners)) or 'unknown'})")
    return out


def is_refusal(reply: Reply, target: Target, *, extra: Iterable[int] = ()) -> bool:
    """401/403, a status the target's guide allows for refusals, or ``extra``; never a 2xx/3xx/5xx."""
    allowed = {401, 403, *target.unauthorized_statuses, *extra}
    return reply.status in allowed and 400 <= reply.status < 500


def reply_label(method: str, url: str, target: Target) -> str:
    """``GET Coverage?patient=x`` for messages: the request relative to the FHIR base."""
    base = target.fhir_base_url
    return f"{method} {url[len(base) + 1:] if url.startswith(base + '/') else url}"
