"""Search parameters with missing and erroneous values (Safety Checklist item 17)

FHIR R4 safety.html item 17 and search.html (handling errors): a parameter with an empty value, an unknown parameter
under ``Prefer: handling=strict`` and a malformed value are handled: never a server error; a refusal is a 4xx with an
OperationOutcome. Under ``Prefer: handling=lenient`` an unknown parameter is ignored and the self link names the
parameters that were applied, and only those. Judged beside the member's own claims search, which must work.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from smart_conformance.checks import expect, fail
from smart_conformance.config import Target
from smart_conformance.fhir import Reply, call, control, require
from smart_conformance.http import RecordingClient
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves

UNKNOWN = "smart-conformance-unknown"
CASES = {
    # case: (extra parameters, headers)
    "empty value": ({"patient": ""}, {}),
    "unknown parameter under handling=strict": ({UNKNOWN: "1"}, {"Prefer": "handling=strict"}),
    "malformed _count": ({"_count": "not-a-number"}, {}),
}


def _media(reply: Reply) -> str:
    return reply.response.headers.get("content-type", "").split(";")[0].strip().lower()


def _self_params(reply: Reply) -> list[str] | None:
    body = reply.json()
    for link in (body.get("link") or []) if isinstance(body, dict) else []:
        if isinstance(link, dict) and link.get("relation") == "self" and isinstance(link.get("url"), str):
            return [k for k, _ in parse_qsl(urlsplit(link["url"]).query, keep_blank_values=True)]
    return None


def _control(http: RecordingClient, target: Target, launch: LaunchResult, pid: str, verdict: str) -> None:
    require(control(http, target.fhir_base_url, "ExplanationOfBenefit", launch.token.access_token,
                    params={"patient": pid}), verdict=verdict)


@pytest.mark.requirement("SAFETY-17", "FHIR-HTTP-02", "FHIR-SRCH-02")
@pytest.mark.parametrize("case", list(CASES))
@proves(Fault.MISSING_VALUE_500)
def test_erroneous_search_parameters(case: str, http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """An empty value, an unknown parameter under handling=strict and a malformed value: no 5xx; a 4xx carries an
    OperationOutcome; strict and malformed are refused."""
    pid = launch.token.patient or target.member.patient_id
    _control(http, target, launch, pid, f"judging the answer to a search with {case}")
    extra, headers = CASES[case]
    params = {"patient": pid, **extra}
    reply = call(http, "GET", f"{target.fhir_base_url}/ExplanationOfBenefit", token=launch.token.access_token,
                 params=params, headers=headers)
    if reply.status >= 400:
        expect(_media(reply) in ("application/fhir+json", "application/json") and
               reply.resource_type == "OperationOutcome", expected=f"{case}: an OperationOutcome with the error",
               actual=f"HTTP {reply.status} {_media(reply) or '(no content type)'} "
                      f"{reply.resource_type or reply.response.text[:80]!r}",
               requirement="FHIR-HTTP-02", exchange=reply.exchange)
    expect(reply.status < 500, expected=f"{case}: handled (a 4xx refusal or, for an empty value, ignored)",
           actual=f"HTTP {reply.status}", requirement="SAFETY-17", exchange=reply.exchange)
    if reply.status < 400 and case.startswith("unknown"):
        fail(expected="handling=strict: the unknown parameter refused with a 4xx", actual=f"HTTP {reply.status}",
             requirement="FHIR-SRCH-02", exchange=reply.exchange)
    if reply.status < 400 and case.startswith("malformed"):
        fail(expected="a malformed _count refused with a 4xx", actual=f"HTTP {reply.status}", requirement="SAFETY-17",
             exchange=reply.exchange)
    if reply.status < 400:  # the empty value was ignored, as search.html allows: it must not read as applied
        shown = _self_params(reply) or []
        expect(reply.resource_type == "Bundle", expected="an empty value ignored: a searchset Bundle",
               actual=f"HTTP {reply.status} {reply.resource_type}", requirement="SAFETY-17", exchange=reply.exchange)
        expect(shown.count("patient") <= 1, expected="the self link names the patient parameter once (applied)",
               actual=f"self link parameters {shown}", requirement="SAFETY-17", exchange=reply.exchange)


@pytest.mark.requirement("SAFETY-17", "FHIR-SRCH-01", "FHIR-SRCH-02")
@proves(Fault.LENIENT_SELF_LINK_LISTS_IGNORED)
def test_lenient_self_link_names_applied_parameters(http: RecordingClient, target: Target,
                                                    launch: LaunchResult) -> None:
    """Under handling=lenient an unknown parameter is ignored, and the self link names patient but not it."""
    pid = launch.token.patient or target.member.patient_id
    _control(http, target, launch, pid, "judging a lenient search")
    reply = call(http, "GET", f"{target.fhir_base_url}/ExplanationOfBenefit", token=launch.token.access_token,
                 params={"patient": pid, UNKNOWN: "1"}, headers={"Prefer": "handling=lenient"})
    expect(reply.status == 200 and reply.resource_type == "Bundle",
           expected="handling=lenient: the unknown parameter ignored, HTTP 200 with a searchset",
           actual=f"HTTP {reply.status} {reply.resource_type}", requirement="FHIR-SRCH-02", exchange=reply.exchange)
    shown = _self_params(reply)
    expect(shown is not None, expected="a self link on the searchset", actual="no self link",
           requirement="FHIR-SRCH-01", exchange=reply.exchange)
    expect(UNKNOWN not in (shown or []) and "patient" in (shown or []),
           expected=f"the self link names the applied patient parameter and not the ignored {UNKNOWN}",
           actual=f"self link parameters {shown}", requirement="FHIR-SRCH-01", exchange=reply.exchange)
