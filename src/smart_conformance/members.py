"""What a member's own token finds, typed, for the checks that judge a member's data or refuse it to others.

Record ids are never hard-coded: each member's Coverage and ExplanationOfBenefit ids are learned by searching with
that member's own token, so the checks work against any payer whose test members have data. Those reads and searches
are also the positive controls of the isolation and scope refusals: a refusal of another member's record counts only
next to the same request, made with that member's own token, succeeding (:func:`smart_conformance.fhir.control`).

A server chooses its page size (FHIR R4 http.html §Paging: HAPI pages at 20), so the first page of a search is not
its result: :func:`search_pages` follows the next links to the end, with the same token, on the FHIR server's own
origin only, for at most ``MAX_PAGES`` pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from smart_conformance.checks import could_not_check
from smart_conformance.compartment import entries, patients_of
from smart_conformance.config import Target
from smart_conformance.fhir import Control, Reply, call, control, require
from smart_conformance.http import RecordingClient

RECORD_TYPES = ("Coverage", "ExplanationOfBenefit")
MAX_PAGES = 50


def next_link(body: Any) -> str | None:
    """The Bundle's ``next`` link, if it has one."""
    for link in (body.get("link") or []) if isinstance(body, dict) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def is_searchset(reply: Reply) -> bool:
    """HTTP 200 with a searchset Bundle: what a search that worked answers."""
    body = reply.json()
    return reply.status == 200 and isinstance(body, dict) and body.get("resourceType") == "Bundle" \
        and body.get("type") == "searchset"


@dataclass(frozen=True)
class Pages:
    """One search and the pages its next links lead to, each fetched with the same token, in order."""

    replies: tuple[Reply, ...]
    links: tuple[str, ...]  # the next links followed, absolute (one per page after the first)
    stopped: str | None = None  # why the walk ended before a page without a next link; None: it reached the end

    @property
    def first(self) -> Reply:
        return self.replies[0]

    @property
    def complete(self) -> bool:
        return self.stopped is None

    def matches(self, rtype: str | None = None) -> list[dict[str, Any]]:
        """Every page's search matches (of ``rtype``, when given)."""
        return [r for reply in self.replies for r in entries(reply.json(), mode="match")
                if rtype is None or r.get("resourceType") == rtype]


def search_pages(http: RecordingClient, base: str, path: str, token: str, params: dict[str, str] | None = None, *,
                 first: Reply | None = None) -> Pages:
    """``GET {base}/{path}`` (or its reply, ``first``) and every next link after it, with ``token``: reads only, never
    off the FHIR server's origin (the token goes nowhere else), at most ``MAX_PAGES`` pages."""
    origin = urlsplit(base)[:2]
    reply = first or call(http, "GET", f"{base}/{path}", token=token, params=params)
    replies, links = [reply], []
    while True:
        if not is_searchset(reply):
            got = f"HTTP {reply.status} {reply.resource_type or ''}".strip()
            return Pages(tuple(replies), tuple(links), f"page {len(replies)} answered {got}, not a searchset")
        link = next_link(reply.json())
        if link is None:
            return Pages(tuple(replies), tuple(links))
        url = urljoin(str(reply.response.url), link)
        if urlsplit(url)[:2] != origin:
            return Pages(tuple(replies), tuple(links), f"page {len(replies)}'s next link leaves the FHIR server's "
                                                        f"origin ({link}); the token is not sent there")
        if len(replies) >= MAX_PAGES:
            return Pages(tuple(replies), tuple(links), f"next links still came after {MAX_PAGES} pages")
        links.append(url)
        reply = call(http, "GET", url, token=token)
        replies.append(reply)


@dataclass
class MemberRecords:
    """What one member's own token finds: their Patient resource and the ids of their claims data."""

    patient_id: str
    patient: dict[str, Any] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)  # every page of each search
    controls: dict[str, Control] = field(default_factory=dict)  # "Patient/x", "Coverage?patient=x" → its control
    searches: dict[str, Pages] = field(default_factory=dict)  # "Coverage" → its search, followed to the end

    def vouch(self, verdict: str) -> None:
        """Attach these successful reads and searches to the running check as the positive control of ``verdict``."""
        require(*self.controls.values(), verdict=verdict)

    def first(self, rtype: str) -> str | None:
        found = self.ids.get(rtype) or []
        return found[0] if found else None


def records_of(http: RecordingClient, target: Target, token: str, patient_id: str) -> MemberRecords:
    """Search the member's own data with their token (the only honest way to learn real ids), every page of it."""
    records = MemberRecords(patient_id=patient_id)
    read = control(http, target.fhir_base_url, f"Patient/{patient_id}", token, who=f"Patient/{patient_id}'s own token")
    records.controls[f"Patient/{patient_id}"] = read
    if not read.ok:
        could_not_check(f"the member's own token could not read Patient/{patient_id} ({read.problem}); "
                        "isolation checks need each member's own data")
    records.patient = read.reply.json()
    for rtype in RECORD_TYPES:
        found = control(http, target.fhir_base_url, rtype, token, params={"patient": patient_id},
                        who=f"Patient/{patient_id}'s own token")
        records.controls[f"{rtype}?patient={patient_id}"] = found
        if not found.ok:
            could_not_check(f"the member's own token could not search {rtype}?patient={patient_id} "
                            f"({found.problem})")
        pages = records.searches[rtype] = search_pages(http, target.fhir_base_url, rtype, token, first=found.reply)
        records.ids[rtype] = list(dict.fromkeys(str(r.get("id")) for r in pages.matches(rtype)
                                                if patient_id in patients_of(r)))
    for rtype, ids in records.ids.items():
        for rid in ids[:1]:  # the first record of each type: read by id in the isolation probes
            records.controls[f"{rtype}/{rid}"] = control(http, target.fhir_base_url, f"{rtype}/{rid}", token,
                                                         who=f"Patient/{patient_id}'s own token")
    return records


@dataclass(frozen=True)
class MemberData:
    """The launch's patient and each of their searches, followed to the end (the replies, for evidence)."""

    patient_id: str
    patient: Reply
    searches: dict[str, Pages]


@dataclass(frozen=True)
class MemberResources:
    """The launch's patient, their Patient read and every page of their Coverage and claims searches."""

    patient_id: str
    replies: dict[str, Reply]

    def resources(self) -> list[tuple[dict[str, Any], Reply]]:
        """Every resource the member's token got back, with the reply it came in (for evidence)."""
        found: list[tuple[dict[str, Any], Reply]] = []
        for reply in self.replies.values():
            body = reply.json()
            if reply.status != 200 or not isinstance(body, dict):
                continue
            found += [(r, reply) for r in (entries(body) if body.get("resourceType") == "Bundle" else [body])]
        return found
