"""Narratives are safe to render (Safety Checklist item 34)

FHIR R4 safety.html item 34 and narrative.html (constraint txt-1): every ``Resource.text.div`` the member's token
returns is well-formed XHTML (the member's own records, and the organizations and practitioners ``_include`` and
``$everything`` bring with them, whose narratives other parties supplied), a ``div`` in the XHTML namespace, with only the basic formatting elements FHIR allows:
no script, form, frame, iframe, object or embed, no event-handler attributes and no ``javascript:`` URLs. An app that
shows a narrative would otherwise run the server's (or an attacker's) script in its own origin.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from smart_conformance.checks import expect, not_applicable
from smart_conformance.compartment import entries
from smart_conformance.config import Target
from smart_conformance.fhir import Reply, call
from smart_conformance.http import RecordingClient
from smart_conformance.members import MemberResources
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves

XHTML = "{http://www.w3.org/1999/xhtml}"
ALLOWED = frozenset((  # narrative.html, txt-1: the basic formatting elements
    "a", "abbr", "acronym", "b", "big", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd", "dfn",
    "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "q", "samp",
    "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "ul", "var"))
ACTIVE_SCHEMES = ("javascript:", "vbscript:", "data:text/html")


def problems(div: str) -> list[str]:
    """What in one narrative breaks the FHIR narrative rules (empty when it is safe)."""
    if "<!DOCTYPE" in div or "<!ENTITY" in div:
        return ["a DOCTYPE or entity declaration"]
    try:
        root = ET.fromstring(div)
    except ET.ParseError as exc:
        return [f"not well-formed XML ({exc})"]
    found = [] if root.tag == f"{XHTML}div" else [f"root element {root.tag}, not an XHTML div"]
    for node in root.iter():
        name = node.tag.removeprefix(XHTML)
        if name not in ALLOWED:
            found.append(f"element <{name}>")
        for attr, value in node.attrib.items():
            if attr.lower().startswith("on"):
                found.append(f"event attribute {attr} on <{name}>")
            if attr in ("href", "src") and value.strip().lower().startswith(ACTIVE_SCHEMES):
                found.append(f"{attr}={value[:40]!r} on <{name}>")
    return found


def _reached(http: RecordingClient, target: Target, token: str, pid: str) -> list[tuple[dict[str, Any], Reply]]:
    """Resources the member's app also renders that are not the member's own: the organizations and practitioners
    claims reference (by ``_include``) and whatever ``$everything`` returns. A refused way in adds nothing."""
    base, out = target.fhir_base_url, []
    for path, params in ((f"{base}/ExplanationOfBenefit", {"patient": pid, "_include": "ExplanationOfBenefit:insurer"}),
                         (f"{base}/ExplanationOfBenefit", {"patient": pid, "_include": "ExplanationOfBenefit:provider"}),
                         (f"{base}/Patient/{pid}/$everything", None)):
        reply = call(http, "GET", path, token=token, params=params)
        if reply.status == 200:
            out += [(resource, reply) for resource in entries(reply.json())]
    return out


@pytest.mark.requirement("SAFETY-34", "FHIR-NARR-01")
@proves(Fault.NARRATIVE_SCRIPT, Fault.SHARED_NARRATIVE_SCRIPT)
def test_narratives_safe_to_render(member_resources: MemberResources, http: RecordingClient, target: Target,
                                   launch: LaunchResult) -> None:
    """Every narrative in the member's Patient, Coverage and claims, and in what ``_include`` and ``$everything``
    bring with them (the insurer and providers: data other parties supplied), is XHTML with no active content."""
    seen = 0
    reached = _reached(http, target, launch.token.access_token, member_resources.patient_id)
    for resource, reply in [*member_resources.resources(), *reached]:  # type: ignore[attr-defined]
        div = (resource.get("text") or {}).get("div") if isinstance(resource.get("text"), dict) else None
        if not isinstance(div, str):
            continue
        seen += 1
        found = problems(div)
        expect(not found, expected=f"{resource.get('resourceType')}/{resource.get('id')}: text.div within the FHIR "
                                   "narrative rules (no script, no event attributes, no javascript: URLs)",
               actual="; ".join(found), requirement="FHIR-NARR-01", exchange=reply.exchange)
    if not seen:
        not_applicable("none of the member's resources carries a narrative (text.div)")
