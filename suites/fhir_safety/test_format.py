"""The _format parameter is honoured (Safety Checklist item 40)

FHIR R4 safety.html item 40 and http.html (content types): ``_format=json`` and ``_format=application/fhir+json``
give FHIR JSON; ``_format=xml`` gives FHIR XML where the CapabilityStatement lists XML, and otherwise a 406/415 or
JSON, never an HTML page (which an app would not parse, and a browser would render). ``_format=html`` and
``text/html`` may give an HTML rendering (http.html allows both values): then nothing of the request may come back as
live markup, so those probes search with a marker in ``_id`` beside the member's own id. An unknown value carrying
the marker gets a 400/406/415 OperationOutcome or the resource as FHIR JSON, never an HTML page, and the value is
never echoed as markup (security.html). Judged beside the member's own Patient read, which must work without
``_format``.
"""

from __future__ import annotations

import pytest

from smart_conformance.checks import expect, expectations
from smart_conformance.config import Target
from smart_conformance.fhir import Reply, call, control, require
from smart_conformance.http import RecordingClient
from smart_conformance.markup import HTML_MEDIA, is_html, landed, new_mark, payload
from smart_conformance.smart.discovery import Document
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves

JSON_MEDIA = ("application/fhir+json", "application/json")


def _media(reply: Reply) -> str:
    return reply.response.headers.get("content-type", "").split(";")[0].strip().lower()


def _xml_advertised(capability_statement: Document) -> bool:
    formats = capability_statement.json.get("format") if capability_statement.ok else None
    return any(isinstance(f, str) and "xml" in f for f in formats or [])


UNKNOWN_FORMAT = "smart-conformance-unknown"  # no server knows it; sent with the marker appended
REFUSED = (400, 406, 415)
HTML_FORMATS = ("html", "text/html")


@pytest.mark.requirement("SAFETY-40", "FHIR-FMT-01", "SAFETY-39", "HTTP-HYG-05")
@pytest.mark.parametrize("fmt", ["json", "application/fhir+json", "xml", *HTML_FORMATS,
                                 pytest.param(UNKNOWN_FORMAT, id="unknown-with-markup")])
@proves(Fault.FORMAT_IGNORED_HTML, Fault.FORMAT_HTML_REFLECTS_QUERY)
def test_format_parameter_honoured(fmt: str, http: RecordingClient, target: Target, launch: LaunchResult,
                                   capability_statement: Document) -> None:
    """_format=json and application/fhir+json give JSON; xml gives XML if advertised, else 406/415 or JSON; html and
    text/html give an HTML rendering, JSON or a refusal, never the request echoed as markup; an unknown value gives a
    400/406/415 OperationOutcome or JSON, never HTML, never the value echoed as markup."""
    pid = launch.token.patient or target.member.patient_id
    path = f"Patient/{pid}"
    require(control(http, target.fhir_base_url, path, launch.token.access_token),
            verdict=f"judging the answer to _format={fmt}")
    if fmt in HTML_FORMATS or fmt == UNKNOWN_FORMAT:
        _judge_echo(fmt, http, target, launch, pid)
        return
    reply = call(http, "GET", f"{target.fhir_base_url}/{path}", token=launch.token.access_token,
                 params={"_format": fmt})
    label, media = f"GET {path}?_format={fmt}", _media(reply)
    got = f"HTTP {reply.status} {media or '(no content type)'} {reply.resource_type or ''}".strip()
    as_json = reply.status == 200 and media in JSON_MEDIA and reply.resource_type == "Patient"
    expect(media not in HTML_MEDIA, expected=f"{label}: never an HTML page", actual=got, requirement="SAFETY-39",
           exchange=reply.exchange)
    if fmt in ("json", "application/fhir+json"):
        expect(as_json, expected=f"{label}: HTTP 200 with the Patient as FHIR JSON", actual=got,
               requirement="FHIR-FMT-01", exchange=reply.exchange)
    elif _xml_advertised(capability_statement):
        expect(reply.status == 200 and "xml" in media and "<Patient" in reply.response.text[:400],
               expected=f"{label}: XML is in the CapabilityStatement's formats, so the Patient as FHIR XML",
               actual=got, requirement="FHIR-FMT-01", exchange=reply.exchange)
    else:
        expect(reply.status in (406, 415) or as_json,
               expected=f"{label}: XML is not advertised, so 406/415 or the Patient as JSON", actual=got,
               requirement="FHIR-FMT-01", exchange=reply.exchange)


def _judge_echo(fmt: str, http: RecordingClient, target: Target, launch: LaunchResult, pid: str) -> None:
    """html and text/html: a search with the marker in ``_id`` (a value that matches nothing, beside the member's own
    id), rendered as HTML, JSON or refused; an unknown value carrying the marker: refused or JSON, never HTML. In
    every case a browser must never find the marker as markup."""
    mark = new_mark()
    if fmt in HTML_FORMATS:
        url, params = f"{target.fhir_base_url}/Patient", {"_id": f"{pid},{payload(mark)}", "_format": fmt}
        label, resource = f"GET Patient?_id={pid},<marker>&_format={fmt}", "Bundle"
    else:
        url, params = f"{target.fhir_base_url}/Patient/{pid}", {"_format": f"{fmt}{payload(mark)}"}
        label, resource = f"GET Patient/{pid}?_format={fmt}<marker>", "Patient"
    reply = call(http, "GET", url, token=launch.token.access_token, params=params)
    media = _media(reply)
    got = f"HTTP {reply.status} {media or '(no content type)'} {reply.resource_type or ''}".strip()
    rendered = reply.status == 200 and fmt in HTML_FORMATS and is_html(reply.response)
    as_json = reply.status == 200 and media in JSON_MEDIA and reply.resource_type == resource
    refused = reply.status in REFUSED and media in JSON_MEDIA and reply.resource_type == "OperationOutcome"
    with expectations() as check:
        for where in landed(reply.response, mark):
            check.fail(expected=f"{label}: the request never echoed as markup", actual=f"{got}: {where}",
                       requirement="HTTP-HYG-05", exchange=reply.exchange)
        if fmt not in HTML_FORMATS:
            check.expect(media not in HTML_MEDIA, expected=f"{label}: never an HTML page for a format no server "
                         "knows", actual=got, requirement="FHIR-FMT-01", exchange=reply.exchange)
        check.expect(rendered or as_json or refused,
                     expected=f"{label}: " + ("an HTML rendering, " if fmt in HTML_FORMATS else "")
                     + f"HTTP 200 with the {resource} as FHIR JSON, or HTTP 400/406/415 with an OperationOutcome",
                     actual=got, requirement="SAFETY-40", exchange=reply.exchange)
