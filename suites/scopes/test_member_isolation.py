"""Member isolation

SMART App Launch 2.2 §Patient-specific scopes, FHIR R4 security.html §Access Control and §Access Denied, Da Vinci
HRex: a patient-level token reaches only the in-context member's data, on every access path — read by id, search by
patient or id, ``_include``/``_revinclude``, chained parameters, ``$everything``, batch entries and the page links
of a search (FHIR R4 http.html §Paging: links are the server's, opaque to clients, but never a key to another
member's data). A refusal of another member's real record looks exactly like the refusal of an id that does not
exist, and a search naming another member like one naming nobody (no count), so neither reveals anything. An
authorized representative reaches the member they represent and no-one else. Each refusal counts only next to its
positive control: the same reads and searches, made with the owning member's own token, succeed in the same run.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_plus, urlsplit, urlunsplit

import pytest

from smart_conformance.checks import could_not_check, expect, fail, not_applicable
from smart_conformance.compartment import (
    entries,
    foreign,
    is_refusal,
    patients_of,
    reply_label,
    resources_in,
)
from smart_conformance.config import Target
from smart_conformance.fhir import FHIR_JSON, Reply, call, control, require
from smart_conformance.http import RecordingClient, current_evidence
from smart_conformance.members import RECORD_TYPES, MemberRecords, search_pages
from smart_conformance.smart.discovery import Document
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves


def _no_foreign_data(reply: Reply, target: Target, allowed: set[str], label: str) -> None:
    """A refusal (any 4xx) or an answer holding only the allowed patients' data; never a 5xx."""
    leaked = foreign(resources_in(reply), allowed) if reply.status < 300 else []
    expect(reply.status < 500 and not leaked,
           expected=f"{label}: a refusal or only Patient/{', '.join(sorted(allowed))}'s data",
           actual=f"HTTP {reply.status}" + (f" with {', '.join(leaked[:6])}" if leaked else ""),
           exchange=reply.exchange)


def _probe(http: RecordingClient, target: Target, token: str, path: str, params: Any, allowed: set[str]) -> None:
    url = f"{target.fhir_base_url}/{path}"
    reply = call(http, "GET", url, token=token, params=params)
    query = "&".join(f"{k}={v}" for k, v in (params.items() if isinstance(params, dict) else params or []))
    _no_foreign_data(reply, target, allowed, f"GET {path}{'?' + query if query else ''}")


def _other_reads(other: MemberRecords) -> list[str]:
    paths = [f"Patient/{other.patient_id}"]
    paths += [f"{rtype}/{rid}" for rtype, ids in other.ids.items() for rid in ids[:1]]
    return paths


@pytest.mark.requirement("SMART-FHIR-05", "HREX-SEC-01", "CARIN-SEC-07")
@proves(Fault.COMPARTMENT_LEAK_READ)
def test_other_member_read_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                   other_records: MemberRecords) -> None:
    """The second member's Patient, Coverage and EOB, read by id with the first member's token, are refused."""
    other_records.vouch("refusing the second member's records to the first member")
    for path in _other_reads(other_records):
        url = f"{target.fhir_base_url}/{path}"
        reply = call(http, "GET", url, token=launch.token.access_token)
        expect(is_refusal(reply, target) and not resources_in(reply),
               expected=f"GET {path} refused (HTTP 401/403/404 as the guide allows, no resource)",
               actual=f"HTTP {reply.status} {reply.resource_type or ''}".strip(), exchange=reply.exchange)


@pytest.mark.requirement("SMART-FHIR-05", "HREX-SEC-01")
@proves(Fault.COMPARTMENT_LEAK_READ, Fault.COMPARTMENT_LEAK_SEARCH, Fault.SEARCH_UNFILTERED)
def test_named_other_patients_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                      own_records: MemberRecords) -> None:
    """Every patient the payer names in ``isolation.other_patient_ids`` is out of the member's reach: Patient/{id}
    read with the member's token is refused, and Coverage and ExplanationOfBenefit searched by ``patient={id}`` return
    none of that patient's data.

    These are members the harness has no credentials for, so it cannot learn their records itself: the ids are the
    payer's word that they exist (default: members.other's patient). The positive control is the member's own
    Patient read and Coverage/EOB searches, which succeed with the same token in the same run."""
    mine = own_records.patient_id
    others = [pid for pid in target.other_patient_ids if pid != mine]
    if not others:
        not_applicable(f"target '{target.name}' names no other patient (isolation.other_patient_ids or members.other)")
    own_records.vouch("refusing the named other patients' records to the member")
    token = launch.token.access_token
    for pid in others:
        reply = call(http, "GET", f"{target.fhir_base_url}/Patient/{pid}", token=token)
        expect(is_refusal(reply, target) and not resources_in(reply),
               expected=f"GET Patient/{pid} (isolation.other_patient_ids) refused (HTTP 401/403/404 as the guide "
                        "allows, no resource)",
               actual=f"HTTP {reply.status} {reply.resource_type or ''}".strip(), exchange=reply.exchange)
        for rtype in ("Coverage", "ExplanationOfBenefit"):
            _probe(http, target, token, rtype, {"patient": pid}, {mine})


@pytest.mark.requirement("SMART-FHIR-05", "FHIR-SEC-07")
@proves(Fault.COMPARTMENT_LEAK_SEARCH, Fault.SEARCH_UNFILTERED)
def test_other_member_search_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                     capability_statement: Document, own_records: MemberRecords,
                                     other_records: MemberRecords) -> None:
    """Searches naming the second member (patient=, beneficiary=, _id=, batch entries) return none of their data."""
    own_records.vouch("judging searches with the first member's token")
    other_records.vouch("refusing the second member's data to the first member")
    token, other, mine = launch.token.access_token, other_records.patient_id, {own_records.patient_id}
    probes: list[tuple[str, dict[str, str]]] = [
        ("ExplanationOfBenefit", {"patient": other}),
        ("ExplanationOfBenefit", {"patient": f"Patient/{other}"}),
        ("Coverage", {"patient": other}),
        ("Coverage", {"beneficiary": other}),
        ("Patient", {"_id": other}),
        ("Patient", {"_id": f"{own_records.patient_id},{other}"}),
    ]
    probes += [(rtype, {"_id": ids[0]}) for rtype, ids in other_records.ids.items() if ids]
    for path, params in probes:
        _probe(http, target, token, path, params, mine)
    if _batch_offered(capability_statement):
        _batch_probe(http, target, token, other_records, mine)


@pytest.mark.requirement("FHIR-SEC-07", "SMART-FHIR-05")
@proves(Fault.COMPARTMENT_LEAK_INCLUDE, Fault.SEARCH_UNFILTERED)
def test_other_member_include_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                      own_records: MemberRecords) -> None:
    """_include and _revinclude pull in no other member's resources (e.g. Organization?_revinclude=EOB:insurer).

    Each search is the member's own (their id, or no patient at all), so it is its own positive control: one the
    target refuses (a 4xx other than 401) is a search shape it does not offer, and judges nothing. A target that
    refuses them all offers no _include/_revinclude: not applicable, never a pass unprobed."""
    own_records.vouch("judging _include/_revinclude searches with the member's token")
    token, me = launch.token.access_token, own_records.patient_id
    probes: list[tuple[str, list[tuple[str, str]]]] = [
        ("Organization", [("_revinclude", "ExplanationOfBenefit:insurer")]),
        ("Organization", [("_revinclude", "ExplanationOfBenefit:provider")]),
        ("Organization", [("_revinclude", "Coverage:payor")]),
        ("ExplanationOfBenefit", [("patient", me), ("_include", "ExplanationOfBenefit:patient")]),
        ("ExplanationOfBenefit", [("patient", me), ("_include", "ExplanationOfBenefit:coverage")]),
        ("Patient", [("_id", me), ("_revinclude", "ExplanationOfBenefit:patient")]),
        ("Patient", [("_id", me), ("_revinclude", "Coverage:beneficiary")]),
    ]
    judged, not_offered = _judge_shapes(http, target, token, [(path, params, None) for path, params in probes], {me})
    if not judged:
        not_applicable(f"the target refuses every _include/_revinclude search of the member's own data "
                       f"({'; '.join(not_offered)}): it offers none, so no included resource can be judged")


def _label(path: str, params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in (params.items() if isinstance(params, dict) else params or []))
    return f"GET {path}{'?' + query if query else ''}"


def _judge_shapes(http: RecordingClient, target: Target, token: str,
                  probes: list[tuple[str, Any, Any]], allowed: set[str]) -> tuple[list[str], list[str]]:
    """Judge each probe whose search shape the target offers: ``(path, params, own_params)``, where ``own_params``
    is the same search shape naming the member themself, run first as the probe's positive control (``None``: the
    probe is the member's own search, its own control). A shape the member's own search gets a 4xx for (not 401:
    their token works, the fixture checked it) is not offered and judges nothing. Returns (judged, not offered)."""
    judged: list[str] = []
    not_offered: list[str] = []
    evidence = current_evidence()
    for path, params, own_params in probes:
        if own_params is not None:
            own = control(http, target.fhir_base_url, path, token, params=own_params)
            first = own.reply
        else:
            own = None
            first = call(http, "GET", f"{target.fhir_base_url}/{path}", token=token, params=params)
        if first.status == 401 or first.status >= 500:
            could_not_check(f"{_label(path, own_params or params)} with the member's own token answered HTTP "
                            f"{first.status}: the search shape's positive control failed, so no verdict")
        if 400 <= first.status < 500:
            not_offered.append(f"{_label(path, own_params or params)} → HTTP {first.status}")
            continue
        if own is None:
            _no_foreign_data(first, target, allowed, _label(path, params))
        else:
            _probe(http, target, token, path, params, allowed)
        judged.append(_label(path, params))
    if not_offered and evidence is not None:
        evidence.notes.append("search shapes the target does not offer (the member's own search refused), not "
                              "judged: " + "; ".join(not_offered))
    return judged, not_offered


def _identifier(patient: dict[str, Any]) -> str | None:
    for ident in patient.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("value"):
            return f"{ident['system']}|{ident['value']}" if ident.get("system") else str(ident["value"])
    return None


def _family(patient: dict[str, Any]) -> str | None:
    for name in patient.get("name") or []:
        if isinstance(name, dict) and name.get("family"):
            return str(name["family"])
    return None


@pytest.mark.requirement("FHIR-SEC-07", "SMART-FHIR-05")
@proves(Fault.COMPARTMENT_LEAK_CHAINED, Fault.SEARCH_UNFILTERED)
def test_other_member_chained_search_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                             own_records: MemberRecords, other_records: MemberRecords) -> None:
    """Chained parameters naming the second member (patient.identifier=, patient.name=) find none of their data.

    Positive control, per search shape: the same chained search naming the first member (their identifier, family
    name or id) succeeds with the same token. A shape whose control the target refuses is one it does not offer."""
    own_records.vouch("judging chained searches with the first member's token")
    other_records.vouch("refusing the second member's data to the first member")
    token, me = launch.token.access_token, own_records.patient_id
    ident, family = _identifier(other_records.patient), _family(other_records.patient)
    own_ident, own_family = _identifier(own_records.patient), _family(own_records.patient)
    if ident is None and family is None:
        could_not_check(f"Patient/{other_records.patient_id} has neither identifier nor family name to chain on")
    probes: list[tuple[str, Any, Any]] = []
    for path, ref in (("ExplanationOfBenefit", "patient"), ("Coverage", "beneficiary")):
        if ident and own_ident:
            probes.append((path, {f"{ref}.identifier": ident}, {f"{ref}.identifier": own_ident}))
        if family and own_family and family != own_family:
            probes.append((path, {f"{ref}.name": family}, {f"{ref}.name": own_family}))
    probes.append(("ExplanationOfBenefit", {"patient:Patient._id": other_records.patient_id},
                   {"patient:Patient._id": me}))
    judged, not_offered = _judge_shapes(http, target, token, probes, {me})
    if not judged:
        not_applicable(f"the target offers no chained search the member's own data answers ({'; '.join(not_offered)})"
                       ": no chained search naming another member can be judged")


@pytest.mark.requirement("FHIR-SEC-07", "SMART-FHIR-05")
@proves(Fault.COMPARTMENT_LEAK_EVERYTHING)
def test_other_member_everything_refused(http: RecordingClient, target: Target, launch: LaunchResult,
                                         other_launch: LaunchResult, own_records: MemberRecords,
                                         other_records: MemberRecords) -> None:
    """Patient/{other}/$everything with the first member's token returns none of the second member's data.

    Positive control: the second member's own token runs the same $everything. A target where that is refused does
    not offer the operation (not applicable); one where it errors cannot be judged."""
    path = f"Patient/{other_records.patient_id}/$everything"
    own = control(http, target.fhir_base_url, path, other_launch.token.access_token,
                  who=f"Patient/{other_records.patient_id}'s own token")
    if not own.ok and 400 <= own.reply.status < 500 and own.reply.status != 401:
        not_applicable(f"the second member's own token gets {own.problem} from {path}: $everything is not offered")
    if not own.ok:
        could_not_check(f"no positive control for $everything: {own.label} answered {own.problem}")
    _probe(http, target, launch.token.access_token, f"Patient/{other_records.patient_id}/$everything", None,
           {own_records.patient_id})


def _batch_offered(capability_statement: Document) -> bool:
    body = capability_statement.json if capability_statement.ok else {}
    for rest in (body.get("rest") or []) if isinstance(body, dict) else []:
        if any(isinstance(i, dict) and i.get("code") == "batch" for i in rest.get("interaction") or []):
            return True
    return False


def _batch_probe(http: RecordingClient, target: Target, token: str, other: MemberRecords, mine: set[str]) -> None:
    """Only where the CapabilityStatement offers batch: the same reads and searches as batch entries."""
    urls = [*_other_reads(other), f"ExplanationOfBenefit?patient={other.patient_id}",
            f"Coverage?beneficiary={other.patient_id}"]
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": "GET", "url": u}} for u in urls]}
    reply = call(http, "POST", target.fhir_base_url, token=token, headers={"Content-Type": FHIR_JSON},
                 content=json.dumps(bundle).encode())
    _no_foreign_data(reply, target, mine, f"POST batch of {len(urls)} reads for Patient/{other.patient_id}")


def _shape(reply: Reply, *ids: str) -> str:
    """Status, media type and body with the probed ids and volatile values blanked: what a client can compare."""
    text = reply.response.text
    for value in ids:
        text = text.replace(value, "{id}")
    text = re.sub(r'"(id|lastUpdated)"\s*:\s*"[^"]*"', r'"\1":"…"', text)
    media = reply.response.headers.get("content-type", "").split(";")[0]
    return f"HTTP {reply.status} {media} {text[:300]}"


@pytest.mark.requirement("FHIR-SEC-08")
@proves(Fault.COMPARTMENT_LEAK_READ, Fault.EXISTENCE_ORACLE)
def test_refusal_same_for_existing_and_missing(http: RecordingClient, target: Target, launch: LaunchResult,
                                               other_records: MemberRecords) -> None:
    """Another member's real record and a nonexistent id are refused alike (no existence oracle)."""
    other_records.vouch("comparing the refusal of the second member's records with a missing id")
    token, missing = launch.token.access_token, target.missing_patient_id
    pairs = [("Patient", other_records.patient_id)]
    pairs += [(rtype, ids[0]) for rtype, ids in other_records.ids.items() if ids]
    for rtype, rid in pairs:
        real = call(http, "GET", f"{target.fhir_base_url}/{rtype}/{rid}", token=token)
        fake = call(http, "GET", f"{target.fhir_base_url}/{rtype}/{missing}", token=token)
        expect(_shape(real, rid) == _shape(fake, missing),
               expected=f"GET {rtype}/<another member's id> answered like GET {rtype}/{missing}",
               actual=f"{_shape(real, rid)}  vs  {_shape(fake, missing)}", exchange=real.exchange)


# Per-request values a server may put in its links or messages (UUIDs, cursor and session ids): not a difference.
_VOLATILE = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}|[A-Za-z0-9_-]{24,}")


def _whole(value: str) -> re.Pattern[str]:
    """``value`` as a whole id (not inside another id: FHIR ids are letters, digits, '-' and '.')."""
    return re.compile(rf"(?<![\w.-]){re.escape(value)}(?![\w.-])")


def _link_shape(url: str, ids: tuple[str, ...]) -> str:
    """A link with every path segment or query value that *is* a probed id (``x``, ``Patient/x``) blanked."""
    def blank(value: str) -> str:
        if any(value in (pid, f"Patient/{pid}") or value.endswith(f"/Patient/{pid}") for pid in ids):
            return "{id}"
        return _VOLATILE.sub("…", value)

    parts = urlsplit(url)
    query = "&".join(f"{k}={blank(v)}" for k, v in parse_qsl(parts.query, keep_blank_values=True))
    return f"{parts.scheme}://{parts.netloc}{'/'.join(blank(s) for s in parts.path.split('/'))}?{query}"


def _search_shape(reply: Reply, *ids: str) -> dict[str, Any]:
    """What a client can compare of a search's answer: status, media type, total, number of entries, links and
    OperationOutcome issues, with the probed ids and per-request values blanked."""
    body = reply.json() if isinstance(reply.json(), dict) else {}
    found = [e.get("resource") or {} for e in body.get("entry") or [] if isinstance(e, dict)]
    outcomes = [body, *found] if body.get("resourceType") == "OperationOutcome" else found
    issues = []
    for issue in (i for o in outcomes if o.get("resourceType") == "OperationOutcome" for i in o.get("issue") or []):
        text = str(issue.get("diagnostics", "")) if isinstance(issue, dict) else ""
        for pid in ids:
            text = _whole(pid).sub("{id}", text)
        issues.append(f"{issue.get('code') if isinstance(issue, dict) else issue}: {_VOLATILE.sub('…', text)}")
    shape: dict[str, Any] = {
        "status": reply.status, "media type": reply.response.headers.get("content-type", "").split(";")[0],
        "total": body.get("total"), "entries": len(found), "OperationOutcome": sorted(issues),
        "links": sorted(f"{link.get('relation')} {_link_shape(str(link.get('url')), ids)}"
                        for link in body.get("link") or [] if isinstance(link, dict))}
    if not body:
        shape["body"] = _shape(reply, *ids)
    return shape


@pytest.mark.requirement("FHIR-SEC-08")
@proves(Fault.SEARCH_TOTAL_COUNTS_OTHERS, Fault.COMPARTMENT_LEAK_SEARCH, Fault.EVERYTHING_EXISTENCE_ORACLE,
        Fault.COMPARTMENT_LEAK_EVERYTHING)
def test_refused_search_reveals_no_count(http: RecordingClient, target: Target, launch: LaunchResult,
                                         other_launch: LaunchResult, other_records: MemberRecords) -> None:
    """A search naming the second member (Coverage and ExplanationOfBenefit by patient=, also with
    ``_total=accurate``; their Patient with ``_revinclude`` of claims; their ``$everything``) answers exactly like the
    same request naming a made-up patient (``missing_patient_id``): the same status, media type, total, number of
    entries, links and OperationOutcome, ids blanked. Otherwise the answer tells whether the member exists and how
    many claims they have.

    Positive control: the second member's own token gets their data with that same search; a search it does not
    answer with their data (``_total`` refused, say) is not compared."""
    other_records.vouch("comparing searches naming the second member with searches naming a missing id")
    base, other, missing = target.fhir_base_url, other_records.patient_id, target.missing_patient_id
    compared = 0
    shapes = [(rtype, {"patient": "{id}", **extra}) for rtype in RECORD_TYPES if other_records.ids.get(rtype)
              for extra in ({}, {"_total": "accurate"})]
    shapes += [("Patient", {"_id": "{id}", "_revinclude": "ExplanationOfBenefit:patient"}),
               ("Patient/{id}/$everything", {})]
    for path, params in shapes:
        (real_path, real_params), (fake_path, fake_params) = (
            (path.format(id=who), {k: v.format(id=who) for k, v in params.items()}) for who in (other, missing))
        own = control(http, base, real_path, other_launch.token.access_token, params=real_params,
                      who=f"Patient/{other}'s own token")
        if not own.ok or not entries(own.reply.json()):
            _note(f"not compared: {own.label} did not return their data ({own.problem or 'no entries'})")
            continue
        real = call(http, "GET", f"{base}/{real_path}", token=launch.token.access_token, params=real_params)
        fake = call(http, "GET", f"{base}/{fake_path}", token=launch.token.access_token, params=fake_params)
        seen, unknown = _search_shape(real, other), _search_shape(fake, missing)
        differ = [f"{key} {seen[key]!r} vs {unknown.get(key)!r}" for key in seen if seen[key] != unknown.get(key)]
        shown = path.format(id="{id}") + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")
        compared += 1
        expect(not differ, expected=f"GET {shown} answered alike for {{id}} = another member and {{id}} = {missing} "
                                    "(status, media type, total, entries, links, OperationOutcome; ids blanked)",
               actual="; ".join(differ), exchange=real.exchange)
    if not compared:
        could_not_check(f"no positive control: Patient/{other}'s own token found none of their data with "
                        "Coverage or ExplanationOfBenefit?patient=, a _revinclude or $everything")


def _note(text: str) -> None:
    """A line in the check's evidence: what was (or could not be) probed, for a reader of a passed check."""
    evidence = current_evidence()
    if evidence is not None and text not in evidence.notes:
        evidence.notes.append(text)


def _swapped(url: str, mine: str, theirs: str) -> str | None:
    """The link with the member's id, wherever it stands as a whole value (a path segment, a query value such as
    ``pat-1`` or ``Patient/pat-1``, an item of a list), replaced by another member's; None when it names no id (an
    opaque cursor)."""
    whole = _whole(mine)
    parts = urlsplit(url)
    pairs = []
    for pair in parts.query.split("&") if parts.query else []:
        key, sep, value = pair.partition("=")
        plain = unquote_plus(value)
        changed = whole.sub(theirs, plain)
        pairs.append(f"{key}{sep}{quote(changed, safe='/,:|')}" if changed != plain else pair)
    path = "/".join(whole.sub(theirs, segment) for segment in parts.path.split("/"))
    swapped = urlunsplit(parts._replace(path=path, query="&".join(pairs)))
    return swapped if swapped != url else None


@pytest.mark.requirement("SMART-FHIR-05", "FHIR-SEC-07", "HREX-SEC-01")
@proves(Fault.PAGING_CURSOR_NOT_BOUND, Fault.PAGING_LEAKS_OTHER_MEMBERS, Fault.COMPARTMENT_LEAK_SEARCH,
        Fault.SEARCH_UNFILTERED)
def test_paging_links_bound_to_member(http: RecordingClient, target: Target, launch: LaunchResult,
                                      other_launch: LaunchResult, own_records: MemberRecords,
                                      other_records: MemberRecords) -> None:
    """A page link serves the search of the member who made it, and no-one else's data.

    The member's claims one a page (ExplanationOfBenefit?patient={member}&_count=1), every next link followed to the
    end with their own token: only their claims, and all of them (the positive control). Then each next link (a)
    followed with the second member's token returns none of the first member's data, and (b) with the member's id
    in it swapped for the second member's, followed with the member's own token, returns none of the second
    member's. Opaque links (server-side cursors) name no id: (b) then has nothing to swap, which FHIR allows; the
    evidence says so."""
    own_records.vouch("judging page links with the first member's token")
    other_records.vouch("judging the first member's page links followed with the second member's token")
    base, mine, theirs = target.fhir_base_url, own_records.patient_id, other_records.patient_id
    known = own_records.searches["ExplanationOfBenefit"]
    claims = set(own_records.ids["ExplanationOfBenefit"])
    if not known.complete:
        could_not_check(f"the member's own ExplanationOfBenefit?patient={mine} could not be followed to its last page "
                        f"({known.stopped}): there is no baseline for their paged claims")
    if len(claims) < 2:
        not_applicable(f"the member has {len(claims)} ExplanationOfBenefit; a search spanning pages needs 2")
    token, other_token = launch.token.access_token, other_launch.token.access_token
    walk = search_pages(http, base, "ExplanationOfBenefit", token, {"patient": mine, "_count": "1"})
    for n, reply in enumerate(walk.replies, 1):
        leaked = foreign(resources_in(reply), {mine}) if reply.status < 300 else []
        expect(not leaked, expected=f"page {n} of ExplanationOfBenefit?patient={mine}&_count=1 (by next links, the "
                                    f"member's own token): only Patient/{mine}'s data",
               actual=", ".join(leaked[:6]), exchange=reply.exchange)
    got = {str(r.get("id")) for r in walk.matches("ExplanationOfBenefit")}
    if not walk.complete or got != claims:
        could_not_check(f"no positive control: the member's own next links (_count=1) did not lead to their "
                        f"{len(claims)} claims ({walk.stopped or f'{len(got & claims)} of them found'}); paging "
                        "itself is judged by test_search_paging_consistent")
    if not walk.links:
        not_applicable(f"the server put all {len(claims)} claims on one page despite _count=1: no page link to probe")
    require(control(http, base, "ExplanationOfBenefit", other_token, params={"patient": theirs, "_count": "1"},
                    who=f"Patient/{theirs}'s own token"),
            verdict="following the first member's page links with the second member's token")
    swapped = 0
    for n, url in enumerate(walk.links, 2):
        borrowed = call(http, "GET", url, token=other_token)
        _no_foreign_data(borrowed, target, {theirs}, f"the next link to page {n}, followed with Patient/{theirs}'s "
                                                     "token")
        changed = _swapped(url, mine, theirs)
        if changed is not None:
            swapped += 1
            reply = call(http, "GET", changed, token=token)
            _no_foreign_data(reply, target, {mine}, f"the next link to page {n} with Patient/{theirs} in place of "
                                                    f"Patient/{mine}, followed with the member's own token")
    if not swapped:
        _note(f"the {len(walk.links)} next links name no patient id (opaque cursors, which FHIR allows): nothing to "
              "swap; each was followed with the second member's token only")


@pytest.mark.requirement("PDEX-SEC-04", "SMART-FHIR-05", "HREX-SEC-01")
@proves(Fault.COMPARTMENT_LEAK_READ, Fault.COMPARTMENT_LEAK_SEARCH, Fault.REPRESENTATIVE_OVER_REACH,
        Fault.SEARCH_UNFILTERED)
def test_representative_reaches_only_represented_member(http: RecordingClient, target: Target,
                                                        representative_launch: LaunchResult, own_records: MemberRecords,
                                                        other_records: MemberRecords) -> None:
    """The representative sees the represented member's Patient, Coverage and EOB, and no other member's."""
    own_records.vouch("refusing the primary member's records to the representative")
    other_records.vouch("refusing the second member's records to the representative")
    token = representative_launch.token.access_token
    represented = target.members["representative"].patient_id
    expect(representative_launch.token.patient == represented,
           expected=f"patient {represented!r} in the representative's token (members.representative.patient_id)",
           actual=f"patient {representative_launch.token.patient!r}", exchange=None)
    for path, params in ((f"Patient/{represented}", None), ("Coverage", {"patient": represented}),
                         ("ExplanationOfBenefit", {"patient": represented})):
        reply = call(http, "GET", f"{target.fhir_base_url}/{path}", token=token, params=params)
        found = resources_in(reply)
        mine = [r for r in found if represented in patients_of(r)]
        expect(reply.status == 200 and bool(mine),
               expected=f"{reply_label('GET', str(reply.response.url), target)}: HTTP 200 with the represented "
                        "member's data", actual=f"HTTP {reply.status}, {len(mine)} of their resources",
               exchange=reply.exchange)
        _no_foreign_data(reply, target, {represented}, f"GET {path} by the representative")
    for records in (own_records, other_records):
        for path in _other_reads(records):
            reply = call(http, "GET", f"{target.fhir_base_url}/{path}", token=token)
            if not is_refusal(reply, target) or resources_in(reply):
                fail(expected=f"GET {path} (not the represented member) refused",
                     actual=f"HTTP {reply.status} {reply.resource_type or ''}".strip(), exchange=reply.exchange)
        for path, params in (("ExplanationOfBenefit", {"patient": records.patient_id}),
                             ("Coverage", {"patient": records.patient_id})):
            _probe(http, target, token, path, params, {represented})
