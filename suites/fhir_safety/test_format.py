"""The _format parameter is honoured (Safety Checklist item 40)

FHIR R4 safety.html item 40 and http.html (content types): ``_format=json`` and ``_format=application/fhir+json``
give FHIR JSON; ``_format=xml`` gives FHIR XML where the CapabilityStatement lists XML, and otherwise a 406/415 or
JSON, never an HTML page (which an app would not parse, and a browser would render). Judged on the member's own
Patient read, which must work without ``_format``.
"""

from __future__ import annotations

import pytest

from smart_conformance.checks import expect
from smart_conformance.config import Target
from smart_conformance.fhir import Reply, call, control, require
from smart_conformance.http import RecordingClient
from smart_conformance.smart.discovery import Document
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves

JSON_MEDIA = ("application/fhir+json", "application/json")


def _media(reply: Reply) -> str:
    return reply.response.headers.get("content-type", "").split(";")[0].strip().lower()


def _xml_advertised(capability_statement: Document) -> bool:
    formats = capability_statement.json.get("format") if capability_statement.ok else None
    return any(isinstance(f, str) and "xml" in f for f in formats or [])


@pytest.mark.requirement("SAFETY-40", "FHIR-FMT-01", "SAFETY-39")
@pytest.mark.parametrize("fmt", ["json", "application/fhir+json", "xml"])
@proves(Fault.FORMAT_IGNORED_HTML)
def test_format_parameter_honoured(fmt: str, http: RecordingClient, target: Target, launch: LaunchResult,
                                   capability_statement: Document) -> None:
    """_format=json and application/fhir+json give JSON; xml gives XML if advertised, else 406/415 or JSON."""
    pid = launch.token.patient or target.member.patient_id
    path = f"Patient/{pid}"
    require(control(http, target.fhir_base_url, path, launch.token.access_token),
            verdict=f"judging the answer to _format={fmt}")
    reply = call(http, "GET", f"{target.fhir_base_url}/{path}", token=launch.token.access_token,
                 params={"_format": fmt})
    label = f"GET {path}?_format={fmt}"
    expect(_media(reply) not in ("text/html", "application/xhtml+xml"), expected=f"{label}: never an HTML page",
           actual=f"HTTP {reply.status} {_media(reply)}", requirement="SAFETY-39", exchange=reply.exchange)
    if fmt != "xml":
        expect(reply.status == 200 and _media(reply) in JSON_MEDIA and reply.resource_type == "Patient",
               expected=f"{label}: HTTP 200 with the Patient as FHIR JSON",
               actual=f"HTTP {reply.status} {_media(reply) or '(no content type)'} {reply.resource_type}",
               requirement="FHIR-FMT-01", exchange=reply.exchange)
    elif _xml_advertised(capability_statement):
        expect(reply.status == 200 and "xml" in _media(reply) and "<Patient" in reply.response.text[:400],
               expected=f"{label}: XML is in the CapabilityStatement's formats, so the Patient as FHIR XML",
               actual=f"HTTP {reply.status} {_media(reply)}", requirement="FHIR-FMT-01", exchange=reply.exchange)
    else:
        ok = reply.status in (406, 415) or (reply.status == 200 and _media(reply) in JSON_MEDIA)
        expect(ok, expected=f"{label}: XML is not advertised, so 406/415 or the Patient as JSON",
               actual=f"HTTP {reply.status} {_media(reply) or '(no content type)'}", requirement="FHIR-FMT-01",
               exchange=reply.exchange)
