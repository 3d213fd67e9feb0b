"""The CapabilityStatement describes how the server behaves (Safety Checklist item 9)

FHIR R4 safety.html item 9 with search.html: for each member-data type the token's scopes cover, what the
CapabilityStatement advertises works: read and search-type, the advertised ``_id`` parameter filters (an ignored
parameter returns unfiltered results; if the self link still names it, the server misstates what it applied, a SHALL),
and an advertised ``_include``/``_revinclude`` is accepted. Interactions it does not advertise (history, vread) are
refused, not silently served. Every request uses the member's own token on the member's own records.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from smart_conformance.checks import could_not_check, expect, fail, not_applicable
from smart_conformance.compartment import entries
from smart_conformance.config import Target
from smart_conformance.fhir import Reply, call, control, require
from smart_conformance.http import RecordingClient
from smart_conformance.oauth import covered_by, scope_set
from smart_conformance.smart.discovery import Document
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, Needs, needs, proves

MEMBER_TYPES = ("Patient", "Coverage", "ExplanationOfBenefit")


def _resources(capability_statement: Document) -> dict[str, dict[str, Any]]:
    cs = capability_statement.json
    if not (capability_statement.ok and cs.get("resourceType") == "CapabilityStatement"):
        could_not_check(f"/metadata gave no CapabilityStatement (HTTP {capability_statement.status})")
    rest = [r for r in cs.get("rest") or [] if isinstance(r, dict) and r.get("mode") == "server"]
    found = rest[0].get("resource") if rest else None
    return {r["type"]: r for r in found or [] if isinstance(r, dict) and isinstance(r.get("type"), str)}


def _interactions(entry: dict[str, Any]) -> set[str]:
    return {i.get("code") for i in entry.get("interaction") or [] if isinstance(i, dict)}


def _params(entry: dict[str, Any]) -> set[str]:
    return {p.get("name") for p in entry.get("searchParam") or [] if isinstance(p, dict)}


def self_link_params(reply: Reply) -> set[str] | None:
    """The parameter names in a searchset's self link (None when there is no self link)."""
    body = reply.json()
    for link in (body.get("link") or []) if isinstance(body, dict) else []:
        if isinstance(link, dict) and link.get("relation") == "self" and isinstance(link.get("url"), str):
            return {k for k, _ in parse_qsl(urlsplit(link["url"]).query, keep_blank_values=True)}
    return None


def _searchset(reply: Reply) -> bool:
    body = reply.json()
    return reply.status == 200 and isinstance(body, dict) and body.get("type") == "searchset"


@pytest.mark.requirement("SAFETY-09", "FHIR-SRCH-01")
@proves(Fault.SEARCH_PARAM_IGNORED)
@needs(Needs.CAPABILITY_STATEMENT)
def test_advertised_interactions_work(http: RecordingClient, target: Target, launch: LaunchResult,
                                      capability_statement: Document) -> None:
    """Read, search-type, the advertised _id parameter and advertised includes work with the member's token."""
    resources, granted = _resources(capability_statement), scope_set(launch.token.scope)
    token, base, pid = launch.token.access_token, target.fhir_base_url, launch.token.patient or \
        target.member.patient_id
    types = [t for t in MEMBER_TYPES if t in resources and covered_by(f"patient/{t}.rs", granted)]
    if not types:
        not_applicable("the CapabilityStatement advertises none of Patient, Coverage, ExplanationOfBenefit that the "
                       "token's scopes cover")
    for rtype in types:
        entry, doing = resources[rtype], _interactions(resources[rtype])
        by = {"_id": pid} if rtype == "Patient" else {"patient": pid} if "patient" in _params(entry) else None
        found: list[dict[str, Any]] = []
        if "search-type" in doing and by is not None:
            reply = call(http, "GET", f"{base}/{rtype}", token=token, params=by)
            expect(_searchset(reply), expected=f"advertised search-type on {rtype}: HTTP 200 with a searchset",
                   actual=f"HTTP {reply.status} {reply.resource_type}", requirement="SAFETY-09",
                   exchange=reply.exchange)
            found = [r for r in entries(reply.json(), mode="match") if r.get("resourceType") == rtype]
        if "read" in doing and (rid := pid if rtype == "Patient" else (found[0].get("id") if found else None)):
            reply = call(http, "GET", f"{base}/{rtype}/{rid}", token=token)
            body = reply.json() if isinstance(reply.json(), dict) else {}
            expect(reply.status == 200 and body.get("id") == rid, expected=f"advertised read: {rtype}/{rid}",
                   actual=f"HTTP {reply.status} {reply.resource_type} id {body.get('id')!r}",
                   requirement="SAFETY-09", exchange=reply.exchange)
        if "_id" in _params(entry) and len(found) >= 2 and by is not None:
            _judge_id_filter(http, base, token, rtype, by, str(found[0].get("id")))
        includes = [v for v in entry.get("searchInclude") or [] if isinstance(v, str)][:1]
        revincludes = [v for v in entry.get("searchRevInclude") or [] if isinstance(v, str)][:1]
        for name, value in [("_include", v) for v in includes] + [("_revinclude", v) for v in revincludes]:
            if by is None or "search-type" not in doing:
                continue
            reply = call(http, "GET", f"{base}/{rtype}", token=token, params={**by, name: value})
            expect(_searchset(reply), expected=f"advertised {name}={value}: HTTP 200 with a searchset",
                   actual=f"HTTP {reply.status} {reply.resource_type}", requirement="SAFETY-09",
                   exchange=reply.exchange)


def _judge_id_filter(http: RecordingClient, base: str, token: str, rtype: str, by: dict[str, str], one: str) -> None:
    """_id=<one of several matches> returns that one only; an ignored _id shown as applied misstates the search."""
    reply = call(http, "GET", f"{base}/{rtype}", token=token, params={**by, "_id": one})
    if not _searchset(reply):
        fail(expected=f"advertised _id on {rtype}: HTTP 200 with a searchset", requirement="SAFETY-09",
             actual=f"HTTP {reply.status} {reply.resource_type}", exchange=reply.exchange)
    ids = sorted(str(r.get("id")) for r in entries(reply.json(), mode="match") if r.get("resourceType") == rtype)
    if ids == [one]:
        return
    applied = self_link_params(reply) or set()
    if "_id" in applied:
        fail(expected=f"the self link names only parameters applied: _id={one} applied, or left out of the link",
             actual=f"self link names _id, yet the matches are {', '.join(ids[:6])}", requirement="FHIR-SRCH-01",
             exchange=reply.exchange)
    fail(expected=f"the advertised _id parameter honoured: only {rtype}/{one}",
         actual=f"matches {', '.join(ids[:6])} (the parameter was ignored)", requirement="SAFETY-09",
         exchange=reply.exchange)


@pytest.mark.requirement("SAFETY-09")
@proves(Fault.UNADVERTISED_INTERACTION_SERVED)
@needs(Needs.CAPABILITY_STATEMENT)
def test_unadvertised_interactions_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                           capability_statement: Document) -> None:
    """History and vread on the member's own Patient, when not advertised, are refused (4xx/501), not served."""
    entry = _resources(capability_statement).get("Patient")
    if entry is None:
        not_applicable("the CapabilityStatement does not list Patient")
    token, base = launch.token.access_token, target.fhir_base_url
    pid = launch.token.patient or target.member.patient_id
    require(control(http, base, f"Patient/{pid}", token), verdict="judging unadvertised interactions")
    probes = {"history-instance": f"Patient/{pid}/_history", "vread": f"Patient/{pid}/_history/1",
              "history-type": "Patient/_history"}
    missing = {code: path for code, path in probes.items() if code not in _interactions(entry)}
    if not missing:
        not_applicable("the CapabilityStatement advertises history and vread on Patient")
    for code, path in missing.items():
        reply = call(http, "GET", f"{base}/{path}", token=token)
        expect(400 <= reply.status < 500 or reply.status == 501,
               expected=f"{code} (not in the CapabilityStatement) refused with a 4xx or 501",
               actual=f"HTTP {reply.status} {reply.resource_type or ''}".strip(), exchange=reply.exchange)
