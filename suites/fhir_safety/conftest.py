"""The member's own resources, read once with the shared launch's token (every page of each search) and reused by
the safety checks."""

from __future__ import annotations

import pytest

from smart_conformance.checks import could_not_check
from smart_conformance.config import Target
from smart_conformance.fhir import call
from smart_conformance.http import RecordingClient
from smart_conformance.members import MemberResources, search_pages
from smart_conformance.smart.launch import LaunchResult

SEARCHED = ("Coverage", "ExplanationOfBenefit")


@pytest.fixture(scope="session")
def member_resources(http: RecordingClient, target: Target, launch: LaunchResult) -> MemberResources:
    patient_id = launch.token.patient or target.member.patient_id
    if not patient_id:
        could_not_check("the shared launch's token response has no patient and the target names none")
    token, base = launch.token.access_token, target.fhir_base_url
    replies = {"Patient": call(http, "GET", f"{base}/Patient/{patient_id}", token=token)}
    for rtype in SEARCHED:
        pages = search_pages(http, base, rtype, token, {"patient": str(patient_id)})
        replies |= {f"{rtype} page {n}": reply for n, reply in enumerate(pages.replies, 1)}
    return MemberResources(patient_id=str(patient_id), replies=replies)
