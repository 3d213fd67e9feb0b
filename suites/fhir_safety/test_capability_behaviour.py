"""The CapabilityStatement describes how the server behaves (Safety Checklist item 9)

FHIR R4 safety.html item 9 with search.html: every resource type the CapabilityStatement advertises and the token's
scopes cover answers its advertised interactions with the member's token: search-type (by ``patient`` where that
parameter is advertised, ``_id`` for Patient, else a bare ``_count=1`` search, e.g. Organization or Practitioner) and
read (an id that search returned, or the member's own Patient); the advertised ``_id`` parameter filters (an ignored
parameter returns unfiltered results; if the self link still names it, the server misstates what it applied, a SHALL),
and an advertised ``_include``/``_revinclude`` is accepted. Only answers that say the interaction does not exist
(404/405/501, a ``not-supported`` OperationOutcome to a request using advertised parameters only), a 5xx, or a success
of the wrong shape fail; other refusals (a parameter the server requires, consent, rate limits) are the server's policy
and are named, not judged. Types outside the token's scopes are named, not probed. Interactions it does not advertise
(history, vread) are refused, not silently served. Every request uses the member's own token on the member's own
records.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from smart_conformance.checks import Expectations, could_not_check, expectations, not_applicable
from smart_conformance.compartment import entries
from smart_conformance.config import Target
from smart_conformance.fhir import Reply, call, control, require
from smart_conformance.http import RecordingClient, current_evidence
from smart_conformance.oauth import covered_by, scope_set
from smart_conformance.smart.discovery import Document
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, Needs, needs, proves

# Statuses that say the interaction (or the type) does not exist here, whatever the request's parameters.
UNSERVED = (404, 405, 501)


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


def _got(reply: Reply) -> str:
    """The answer in a few words: status, what it carried, and an OperationOutcome's first issue."""
    media = reply.response.headers.get("content-type", "").split(";")[0].strip()
    body = reply.json()
    issues = body.get("issue") if isinstance(body, dict) and reply.resource_type == "OperationOutcome" else None
    first = issues[0] if isinstance(issues, list) and issues and isinstance(issues[0], dict) else {}
    said = f" ({first.get('code')}: {str(first.get('diagnostics') or '')[:120]})" if first else ""
    return f"HTTP {reply.status} {reply.resource_type or media or '(no body)'}{said}"


def _not_supported(reply: Reply) -> bool:
    body = reply.json()
    return isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" and any(
        isinstance(i, dict) and i.get("code") == "not-supported" for i in body.get("issue") or [])


def _unserved(reply: Reply, *, advertised_only: bool) -> bool:
    """The answer says the interaction does not exist: 404/405/501, or a 4xx ``not-supported`` to a request that
    used only advertised parameters (for an unadvertised one it may be about the parameter, not the interaction)."""
    return reply.status in UNSERVED or (advertised_only and 400 <= reply.status < 500 and _not_supported(reply))


def _scoped(rtype: str, letter: str, granted: set[str]) -> bool:
    """The token's scopes let it read (r) or search (s) ``rtype`` (patient or user context, v1 or v2, wildcards)."""
    return any(covered_by(f"{context}/{rtype}.{letter}", granted) for context in ("patient", "user"))


def _search_by(rtype: str, entry: dict[str, Any], pid: str) -> dict[str, str]:
    """The member's own records by ``patient`` (``_id`` for Patient) where advertised; else the first match of a bare
    search (shared types such as Organization and Practitioner have no patient parameter)."""
    params = _params(entry)
    if rtype == "Patient" and "_id" in params:
        return {"_id": pid}
    if "patient" in params:
        return {"patient": pid}
    return {"_count": "1"}


def _note(text: str) -> None:
    evidence = current_evidence()
    if evidence is not None and text not in evidence.notes:
        evidence.notes.append(text)


class _Probes:
    """What one run of the check learned: interactions that worked, and why others were not judged."""

    def __init__(self, check: Expectations) -> None:
        self.check = check
        self.worked = 0
        self.unjudged: list[str] = []

    def judge(self, reply: Reply, label: str, ok: bool, wanted: str, *, advertised_only: bool) -> bool:
        """One answer to an advertised interaction: worked, failed (it does not exist, broke, or came back in the
        wrong shape) or, for a refusal by policy, named and not judged. Returns whether it worked."""
        if reply.status == 401:
            could_not_check(f"{label} with the member's token answered HTTP 401: the shared launch's token was not "
                            "accepted, so the advertised interactions cannot be judged")
        if ok:
            self.worked += 1
            return True
        if reply.status == 200 or _unserved(reply, advertised_only=advertised_only) or reply.status >= 500:
            why = "; the CapabilityStatement advertises it" if reply.status != 200 else ""
            self.check.fail(expected=f"{label}: {wanted}", actual=f"{_got(reply)}{why}", requirement="SAFETY-09",
                            exchange=reply.exchange)
        else:
            self.unjudged.append(f"{label}: {_got(reply)} (a refusal by the server's policy, not judged)")
        return False


@pytest.mark.requirement("SAFETY-09", "FHIR-SRCH-01")
@proves(Fault.SEARCH_PARAM_IGNORED, Fault.CAPABILITY_ADVERTISES_UNSERVED_TYPE)
@needs(Needs.CAPABILITY_STATEMENT)
def test_advertised_interactions_work(http: RecordingClient, target: Target, launch: LaunchResult,
                                      capability_statement: Document) -> None:
    """Every advertised type the token's scopes cover answers its advertised search-type and read; the advertised
    _id parameter filters and advertised includes are accepted."""
    resources, granted = _resources(capability_statement), scope_set(launch.token.scope)
    token, base = launch.token.access_token, target.fhir_base_url
    pid = str(launch.token.patient or target.member.patient_id or "")
    if not pid:
        could_not_check("the shared launch's token response has no patient and the target names none")
    outside: list[str] = []
    with expectations() as check:
        probes = _Probes(check)
        for rtype, entry in resources.items():
            doing = _interactions(entry)
            can_search = "search-type" in doing and _scoped(rtype, "s", granted)
            can_read = "read" in doing and _scoped(rtype, "r", granted)
            if not doing & {"read", "search-type"}:
                probes.unjudged.append(f"{rtype}: no read or search-type advertised")
                continue
            if not (can_search or can_read):
                outside.append(rtype)
                continue
            by = _search_by(rtype, entry, pid) if can_search else None
            found: list[dict[str, Any]] = []
            searched = False
            if by is not None:
                reply = call(http, "GET", f"{base}/{rtype}", token=token, params=by)
                label = f"advertised search-type GET {rtype}?{urlencode(by)}"
                searched = probes.judge(reply, label, _searchset(reply), "HTTP 200 with a searchset Bundle",
                                        advertised_only=set(by) <= _params(entry))
                if searched:
                    found = [r for r in entries(reply.json(), mode="match") if r.get("resourceType") == rtype]
                    _judge_search_extras(http, probes, base, token, rtype, entry, by, found)
            rid = pid if rtype == "Patient" else str(found[0].get("id")) if found and found[0].get("id") else None
            if can_read and rid:
                reply = call(http, "GET", f"{base}/{rtype}/{rid}", token=token)
                body = reply.json() if isinstance(reply.json(), dict) else {}
                probes.judge(reply, f"advertised read GET {rtype}/{rid}",
                             reply.status == 200 and reply.resource_type == rtype and str(body.get("id")) == rid,
                             f"HTTP 200 with {rtype}/{rid}", advertised_only=True)
            elif can_read:
                why = ("no search-type to learn an id from" if by is None else "its search did not work" if not searched
                       else "its search returned no match: the member may hold no such data")
                probes.unjudged.append(f"{rtype}: read not probed ({why})")
        if outside:
            _note(f"not probed, outside the token's scopes ({launch.token.scope or 'none granted'}): "
                  f"{', '.join(outside)}")
        for item in probes.unjudged:
            _note(f"not judged: {item}")
        if not probes.worked and not check.failures:
            reasons = [f"outside the granted scopes: {', '.join(outside)}"] * bool(outside) + probes.unjudged
            not_applicable("no advertised read or search-type could be probed with the member's token ("
                           f"{'; '.join(reasons) or 'the CapabilityStatement lists no resource types'})")


def _judge_search_extras(http: RecordingClient, probes: _Probes, base: str, token: str, rtype: str,
                         entry: dict[str, Any], by: dict[str, str], found: list[dict[str, Any]]) -> None:
    """Beside a search that worked: the advertised _id filters, and the first advertised include/revinclude works."""
    if "_id" in _params(entry) and "_id" not in by and len(found) >= 2:
        _judge_id_filter(http, probes.check, base, token, rtype, by, str(found[0].get("id")))
    includes = [v for v in entry.get("searchInclude") or [] if isinstance(v, str)][:1]
    revincludes = [v for v in entry.get("searchRevInclude") or [] if isinstance(v, str)][:1]
    for name, value in [("_include", v) for v in includes] + [("_revinclude", v) for v in revincludes]:
        reply = call(http, "GET", f"{base}/{rtype}", token=token, params={**by, name: value})
        expected = f"advertised {name}={value} on {rtype}: HTTP 200 with a searchset"
        if _searchset(reply):
            probes.worked += 1
        elif reply.status == 401:
            could_not_check(f"GET {rtype}?{name}={value} answered HTTP 401 with the member's token")
        else:  # the same search worked without it: a refusal here is the advertised include not working
            probes.check.fail(expected=expected, actual=_got(reply), requirement="SAFETY-09", exchange=reply.exchange)


def _judge_id_filter(http: RecordingClient, check: Expectations, base: str, token: str, rtype: str,
                     by: dict[str, str], one: str) -> None:
    """_id=<one of several matches> returns that one only; an ignored _id shown as applied misstates the search."""
    reply = call(http, "GET", f"{base}/{rtype}", token=token, params={**by, "_id": one})
    if not _searchset(reply):
        check.fail(expected=f"advertised _id on {rtype}: HTTP 200 with a searchset", requirement="SAFETY-09",
                   actual=_got(reply), exchange=reply.exchange)
        return
    ids = sorted(str(r.get("id")) for r in entries(reply.json(), mode="match") if r.get("resourceType") == rtype)
    if ids == [one]:
        return
    if "_id" in (self_link_params(reply) or set()):
        check.fail(expected=f"the self link names only parameters applied: _id={one} applied, or left out of the "
                            "link", actual=f"self link names _id, yet the matches are {', '.join(ids[:6])}",
                   requirement="FHIR-SRCH-01", exchange=reply.exchange)
        return
    check.fail(expected=f"the advertised _id parameter honoured: only {rtype}/{one}",
               actual=f"matches {', '.join(ids[:6])} (the parameter was ignored)", requirement="SAFETY-09",
               exchange=reply.exchange)


# Common US Core and CARIN types a payer may hold but not list: served anyway, they were never reviewed for access.
UNLISTED_CANDIDATES = ("Condition", "Observation", "Encounter", "MedicationRequest", "Claim", "DocumentReference")


def _system_interactions(capability_statement: Document) -> set[str]:
    rest = [r for r in capability_statement.json.get("rest") or [] if isinstance(r, dict) and r.get("mode") == "server"]
    return _interactions(rest[0]) if rest else set()


@pytest.mark.requirement("SAFETY-09")
@proves(Fault.UNADVERTISED_INTERACTION_SERVED, Fault.SYSTEM_SEARCH_SERVED)
@needs(Needs.CAPABILITY_STATEMENT)
def test_unadvertised_interactions_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                           capability_statement: Document) -> None:
    """What the CapabilityStatement does not advertise is refused (4xx/501), not served with data: history and vread
    on the member's own Patient, whole-system search and history, and common types it does not list (Condition,
    Observation, ...) searched for the member. Served anyway, such a way in was never reviewed for access."""
    resources = _resources(capability_statement)
    token, base = launch.token.access_token, target.fhir_base_url
    pid = launch.token.patient or target.member.patient_id
    require(control(http, base, f"Patient/{pid}", token), verdict="judging unadvertised interactions")
    probes: dict[str, tuple[str, dict[str, str] | None]] = {}
    if "Patient" in resources:
        probes |= {code: (path, None) for code, path in (
            ("history-instance", f"Patient/{pid}/_history"), ("vread", f"Patient/{pid}/_history/1"),
            ("history-type", "Patient/_history")) if code not in _interactions(resources["Patient"])}
    system = _system_interactions(capability_statement)
    if "search-system" not in system:
        probes["search-system"] = ("", {"_count": "1"})
    if "history-system" not in system:
        probes["history-system"] = ("_history", None)
    probes |= {f"search of unlisted {rtype}": (rtype, {"patient": str(pid)})
               for rtype in UNLISTED_CANDIDATES if rtype not in resources}
    if not probes:
        not_applicable("the CapabilityStatement advertises every interaction probed here")
    with expectations() as check:
        for code, (path, params) in probes.items():
            reply = call(http, "GET", f"{base}/{path}".rstrip("/"), token=token, params=params)
            check.expect(400 <= reply.status < 500 or reply.status == 501,
                         expected=f"{code} (not in the CapabilityStatement) refused with a 4xx or 501",
                         actual=f"HTTP {reply.status} {reply.resource_type or ''}".strip(), exchange=reply.exchange)
