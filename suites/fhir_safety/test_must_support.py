"""CARIN must-support elements beyond the few must-haves (Safety Checklist item 4)

FHIR R4 safety.html item 4 with CARIN Blue Button STU2 (must support; each profile's differential): every resource the
member's token returns names its CARIN profile in ``meta.profile`` and carries the must-support elements that profile
requires (minimum cardinality 1 or more). Whether optional must-support data exists cannot be seen from outside, so
only required ones are judged; each missing one is reported, at the IG's level (SHALL).
"""

from __future__ import annotations

from typing import Any

import pytest

from smart_conformance.checks import expect, not_applicable
from smart_conformance.members import MemberResources
from smart_conformance.testplan import Fault, proves

CARIN = "http://hl7.org/fhir/us/carin-bb/StructureDefinition/"
# CARIN BB STU2 (2.0.0): must-support elements with a minimum cardinality of 1, per profile (dotted paths; a list on
# the way means "in every item"). The ExplanationOfBenefit entry covers the elements all four EOB profiles require.
REQUIRED: dict[str, tuple[str, ...]] = {
    "C4BB-Patient": ("meta.lastUpdated", "identifier", "name", "gender"),
    "C4BB-Coverage": ("meta.lastUpdated", "status", "beneficiary", "relationship", "payor"),
    "C4BB-ExplanationOfBenefit": ("meta.lastUpdated", "identifier", "status", "type", "use", "patient",
                                  "billablePeriod", "created", "insurer", "provider", "outcome", "insurance",
                                  "insurance.focal", "insurance.coverage"),
}
DEFAULT_PROFILE = {"Patient": "C4BB-Patient", "Coverage": "C4BB-Coverage",
                   "ExplanationOfBenefit": "C4BB-ExplanationOfBenefit"}


def _present(resource: Any, path: str) -> bool:
    """Is the element at ``path`` there (in every item, through lists)?"""
    values: list[Any] = [resource]
    for step in path.split("."):
        nxt: list[Any] = []
        for value in values:
            item = value.get(step) if isinstance(value, dict) else None
            if item is None or item == [] or item == "":
                return False
            nxt.extend(item if isinstance(item, list) else [item])
        values = nxt
    return True


def _profile(resource: dict[str, Any]) -> str | None:
    """The CARIN profile the resource claims (the EOB sub-profiles share one entry), else its type's profile."""
    for url in (resource.get("meta") or {}).get("profile") or []:
        name = str(url).split("|")[0].removeprefix(CARIN)
        if name.startswith("C4BB-ExplanationOfBenefit"):
            return "C4BB-ExplanationOfBenefit"
        if name in REQUIRED:
            return name
    return DEFAULT_PROFILE.get(str(resource.get("resourceType")))


@pytest.mark.requirement("SAFETY-04", "CARIN-MS-01", "CARIN-DATA-04")
@proves(Fault.MUST_SUPPORT_DROPPED)
def test_carin_must_support_elements(member_resources: MemberResources) -> None:
    """The member's Patient, Coverage and claims carry meta.profile and every required CARIN must-support element."""
    judged, missing, unclaimed, last = 0, [], [], None
    for resource, reply in member_resources.resources():  # type: ignore[attr-defined]
        profile = _profile(resource)
        if profile is None:
            continue
        judged, last = judged + 1, reply
        name = f"{resource.get('resourceType')}/{resource.get('id')}"
        if not any(str(p).startswith(CARIN) for p in (resource.get("meta") or {}).get("profile") or []):
            unclaimed.append(name)
        missing += [f"{name}.{path} ({profile})" for path in REQUIRED[profile] if not _present(resource, path)]
    if not judged:
        not_applicable("the member's token returned no Patient, Coverage or ExplanationOfBenefit")
    expect(not missing, expected="every must-support element the CARIN profiles require, in every resource",
           actual=f"missing: {'; '.join(missing[:20])}", requirement="CARIN-MS-01", exchange=last.exchange)
    expect(not unclaimed, expected="meta.profile naming the resource's CARIN profile",
           actual=f"no CARIN profile in meta.profile: {', '.join(unclaimed[:10])}", requirement="CARIN-DATA-04",
           exchange=last.exchange)
