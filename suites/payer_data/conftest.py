"""The member's own claims data, searched once with the shared launch's token (every page: a server may page by
default) and reused by the payer-data checks."""

from __future__ import annotations

import pytest

from smart_conformance.checks import could_not_check
from smart_conformance.config import Target
from smart_conformance.fhir import call
from smart_conformance.http import RecordingClient
from smart_conformance.members import MemberData, search_pages
from smart_conformance.smart.launch import LaunchResult


@pytest.fixture(scope="session")
def member_data(http: RecordingClient, target: Target, launch: LaunchResult) -> MemberData:
    patient_id = launch.token.patient
    if not patient_id:
        could_not_check("the shared launch's token response has no patient (see test_token_patient_context)")
    token = launch.token.access_token
    patient = call(http, "GET", f"{target.fhir_base_url}/Patient/{patient_id}", token=token)
    searches = {rtype: search_pages(http, target.fhir_base_url, rtype, token, {"patient": str(patient_id)})
                for rtype in ("Coverage", "ExplanationOfBenefit")}
    return MemberData(patient_id=str(patient_id), patient=patient, searches=searches)
