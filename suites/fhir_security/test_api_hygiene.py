"""FHIR API errors, input handling and headers

FHIR R4 http.html and security.html with the Safety Checklist: errors come back as OperationOutcome JSON with a 4xx
status and nothing of the server's internals; junk, injection-shaped, very long and non-ASCII input is refused
cleanly (never a 5xx) and never echoed as live HTML, whether it arrives in a parameter or in a path segment (an
unknown resource type, an id, an operation name); unsupported methods get 405/501; resources are served as
``application/fhir+json`` with ``X-Content-Type-Options: nosniff`` and no software banner. CORS never hands an
arbitrary origin the member's credentials, and preflights are answered sanely. Headers and CORS are judged on every
surface: reads, the claims search, its next link, an ``_include`` search, ``$everything``, discovery and the token,
revocation and introspection endpoints. Each refusal is judged next to its
positive control: the member's own read and search, with their valid token, succeed in the same run.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from smart_conformance.checks import could_not_check, expect, expectations, not_applicable
from smart_conformance.config import Target
from smart_conformance.fhir import (
    FHIR_SURFACES,
    Reply,
    call,
    control,
    disclosure,
    fhir_surface,
    require,
    require_surface,
)
from smart_conformance.http import RecordingClient
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, production_unsafe, proves

EVIL_ORIGIN = "https://smart-conformance-attacker.example"
SCRIPT = "<script>alert(1)</script>"
PATH_SCRIPT = "<svg onload=alert(1)>"  # no '/', so it stays one path segment
JUNK: dict[str, tuple[str, dict[str, str]]] = {
    "non-numeric _count": ("ExplanationOfBenefit", {"_count": "abc"}),
    "SQL-shaped _count": ("ExplanationOfBenefit", {"_count": "1' OR '1'='1"}),
    "SQL-shaped patient": ("ExplanationOfBenefit", {"patient": "x' OR '1'='1"}),
    "script in _id": ("Patient", {"_id": SCRIPT}),
    "script as a parameter name": ("ExplanationOfBenefit", {SCRIPT: "1"}),
    "script in _include": ("ExplanationOfBenefit", {"_include": SCRIPT}),
    "8 KB patient value": ("ExplanationOfBenefit", {"patient": "A" * 8192}),
    "8 KB _count": ("ExplanationOfBenefit", {"_count": "9" * 8192}),
    "unicode and control characters": ("Patient", {"_id": "\u202e\U0001d54f\u2603\u0000\ufeff"}),
}


def _media(reply: Reply) -> str:
    return reply.response.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_outcome_json(reply: Reply) -> bool:
    return _media(reply) in ("application/fhir+json", "application/json") and reply.resource_type == "OperationOutcome"


def _controls(http: RecordingClient, target: Target, launch: LaunchResult, verdict: str) -> None:
    """The member's own read and search succeed: without that, a 4xx to a bad request proves nothing."""
    token, pid = launch.token.access_token, target.member.patient_id
    require(control(http, target.fhir_base_url, f"Patient/{pid}", token),
            control(http, target.fhir_base_url, "ExplanationOfBenefit", token, params={"patient": pid}),
            verdict=verdict)


@pytest.mark.requirement("SAFETY-41", "SAFETY-39", "FHIR-HTTP-02", "CARIN-SEC-08", "FHIR-SEC-03", "FHIR-SEC-13")
@pytest.mark.parametrize("case", ["bad _count", "unknown parameter (strict)", "malformed id", "invalid _include",
                                  "unknown operation"])
@proves(Fault.ERROR_NOT_OPERATIONOUTCOME, Fault.ERROR_STACK_TRACE, Fault.SERVER_BANNER)
def test_errors_are_operationoutcome(case: str, http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """A bad _count, an unknown search parameter or an _include of an unknown parameter under handling=strict, a
    malformed id and an unknown operation on the member's Patient get a 4xx OperationOutcome without internals (an
    unknown operation may also get 501 Not Implemented)."""
    _controls(http, target, launch, f"judging the answer to a {case}")
    base, pid = target.fhir_base_url, target.member.patient_id
    headers: dict[str, str] = {}
    if case == "bad _count":
        url, params = f"{base}/ExplanationOfBenefit", {"patient": pid, "_count": "abc"}
    elif case == "malformed id":
        url, params = f"{base}/Patient/$$not..a-valid~id$$", {}
    elif case == "unknown operation":
        url, params = f"{base}/Patient/{pid}/$smart-conformance-unknown", {}
    elif case == "invalid _include":
        url, params = f"{base}/ExplanationOfBenefit", {"patient": pid,
                                                       "_include": "ExplanationOfBenefit:smart-conformance-unknown"}
        headers = {"Prefer": "handling=strict"}
    else:
        url, params = f"{base}/ExplanationOfBenefit", {"patient": pid, "smart-conformance-unknown": "1"}
        headers = {"Prefer": "handling=strict"}
    reply = call(http, "GET", url, token=launch.token.access_token, params=params, headers=headers)
    found = disclosure(reply)
    operation = case == "unknown operation"  # not a search: FHIR-SEC-13 asks for a clean refusal, 501 included
    with expectations() as check:  # status, body and disclosure are separate findings, each at its own level
        check.expect(400 <= reply.status < 500 or (operation and reply.status == 501),
                     expected=f"{case}: a 4xx refusal" + (" (or 501 Not Implemented)" if operation else ""),
                     actual=f"HTTP {reply.status}",
                     requirement=("FHIR-SEC-13",) if operation else ("FHIR-HTTP-02", "CARIN-SEC-08"),
                     exchange=reply.exchange)
        check.expect(_is_outcome_json(reply), expected=f"{case}: an OperationOutcome as FHIR JSON",
                     actual=f"{_media(reply) or '(no content type)'} "
                            f"{reply.resource_type or reply.response.text[:120]!r}",
                     requirement=("SAFETY-41", "SAFETY-39"), exchange=reply.exchange)
        check.expect(found is None, expected="no stack trace, framework or version in the error", actual=found,
                     requirement="FHIR-SEC-03", exchange=reply.exchange)


@pytest.mark.requirement("FHIR-SEC-13", "SAFETY-35")
@proves(Fault.ERROR_STACK_TRACE)
def test_junk_input_refused_cleanly(http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """Junk, injection-shaped, 8 KB and unicode search values are answered without a server error."""
    _controls(http, target, launch, "judging the answers to junk input")
    for label, (rtype, params) in JUNK.items():
        reply = call(http, "GET", f"{target.fhir_base_url}/{rtype}", token=launch.token.access_token, params=params)
        expect(reply.status < 500, expected=f"{label}: a 2xx answer or a 4xx refusal, not a server error",
               actual=f"HTTP {reply.status}", exchange=reply.exchange)


@pytest.mark.requirement("HTTP-HYG-05", "FHIR-SEC-12")
@proves(Fault.ERROR_NOT_OPERATIONOUTCOME, Fault.PATH_REFLECTED_IN_HTML)
def test_input_not_reflected_as_html(http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """Script-shaped input never comes back unescaped in a text/html response: search values and names, and path
    segments (an unknown resource type, an id, an operation name)."""
    _controls(http, target, launch, "judging how input is echoed")
    base, pid = target.fhir_base_url, target.member.patient_id
    probes = [(f"{base}/{rtype}", params) for rtype, params in JUNK.values() if
              any(SCRIPT in k or SCRIPT in v for k, v in params.items())]
    probes += [(f"{base}/Patient/{SCRIPT}", {}), (f"{base}/{PATH_SCRIPT}", {}), (f"{base}/{PATH_SCRIPT}/{pid}", {}),
               (f"{base}/Patient/{PATH_SCRIPT}", {}), (f"{base}/Patient/{pid}/{PATH_SCRIPT}", {})]
    for url, params in probes:
        reply = call(http, "GET", url, token=launch.token.access_token, params=params)
        live = next((p for p in (SCRIPT, PATH_SCRIPT) if p in reply.response.text), None)
        expect(not (_media(reply) in ("text/html", "application/xhtml+xml") and live),
               expected="input echoed only escaped or as JSON", actual=f"HTTP {reply.status} {_media(reply)} "
                                                                    f"with {live} live in the page",
               exchange=reply.exchange)


@pytest.mark.requirement("HTTP-HYG-04", "SAFETY-41")
@pytest.mark.parametrize("method,path", [("TRACE", "Patient/{pid}"), ("PROPFIND", "Patient/{pid}"),
                                         ("DELETE", "metadata")])
@proves(Fault.ERROR_NOT_OPERATIONOUTCOME, Fault.PATH_REFLECTED_IN_HTML)
@production_unsafe('sends TRACE, PROPFIND and DELETE requests to the FHIR API')
def test_unsupported_methods_refused(method: str, path: str, http: RecordingClient, target: Target,
                                     launch: LaunchResult) -> None:
    """TRACE, an unknown method and DELETE on metadata get 405/501 (or another 4xx) with an OperationOutcome."""
    _controls(http, target, launch, f"judging the answer to {method}")
    url = f"{target.fhir_base_url}/{path.format(pid=target.member.patient_id)}"
    reply = call(http, method, url, token=launch.token.access_token)
    expect(400 <= reply.status < 500 or reply.status == 501,
           expected=f"{method} {path}: 405 (with Allow) or 501, at least a 4xx", actual=f"HTTP {reply.status}",
           requirement="HTTP-HYG-04", exchange=reply.exchange)
    if method != "TRACE" or reply.response.content:
        expect(_is_outcome_json(reply), expected=f"{method} {path}: an OperationOutcome as FHIR JSON",
               actual=f"{_media(reply) or '(no content type)'} {reply.response.text[:120]!r}",
               requirement="SAFETY-41", exchange=reply.exchange)


def _member_read(http: RecordingClient, target: Target, launch: LaunchResult, **headers: str) -> Reply:
    return call(http, "GET", f"{target.fhir_base_url}/Patient/{target.member.patient_id}",
                token=launch.token.access_token, headers=headers or None)


@pytest.mark.requirement("FHIR-HTTP-01", "SAFETY-38")
@proves(Fault.WRONG_CONTENT_TYPE)
def test_fhir_json_content_type(http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """A read asking for application/fhir+json is served as application/fhir+json."""
    reply = _member_read(http, target, launch)
    if reply.status != 200:
        could_not_check(f"the member's own read answered HTTP {reply.status}: no resource to judge the media type of")
    expect(_media(reply) == "application/fhir+json", expected="HTTP 200 with Content-Type application/fhir+json",
           actual=f"HTTP {reply.status}, Content-Type {reply.response.headers.get('content-type', '(none)')}",
           requirement="FHIR-HTTP-01", exchange=reply.exchange)


@pytest.mark.requirement("HTTP-HYG-01", "FHIR-SEC-12")
@proves(Fault.NOSNIFF_MISSING)
def test_nosniff_on_api_responses(http: RecordingClient, target: Target, launch: LaunchResult,
                                  smart_config: dict[str, Any]) -> None:
    """FHIR reads and errors, the claims search, its next link, an ``_include`` search and ``$everything`` (whatever
    they answer), discovery, and the token, revocation and introspection endpoints' answers to a request without
    client credentials carry X-Content-Type-Options: nosniff. An answer without a body has nothing to sniff."""
    base, token = target.fhir_base_url, launch.token.access_token
    replies = [_member_read(http, target, launch),
               call(http, "GET", f"{base}/Patient/{target.missing_patient_id}", token=token),
               call(http, "GET", f"{base}/.well-known/smart-configuration", headers={"Accept": "application/json"})]
    for name in FHIR_SURFACES:
        found = fhir_surface(http, base, target.member.patient_id, token, name)
        if found.url:  # a refused include or $everything is an API answer too; a next link needs a first page
            replies.append(call(http, "GET", found.url, token=token, params=found.params))
    if isinstance(smart_config.get("token_endpoint"), str):
        replies.append(call(http, "POST", smart_config["token_endpoint"], headers={"Accept": "application/json"},
                            data={"grant_type": "authorization_code", "code": "smart-conformance-none"}))
    for endpoint in ("revocation_endpoint", "introspection_endpoint"):
        if isinstance(smart_config.get(endpoint), str):  # unauthenticated: a harmless, refused request
            replies.append(call(http, "POST", smart_config[endpoint], headers={"Accept": "application/json"},
                                data={"token": "smart-conformance-none"}))
    with expectations() as check:  # each answer is its own finding
        for reply in replies:
            if not reply.response.content:
                continue
            value = reply.response.headers.get("x-content-type-options", "")
            check.expect(value.strip().lower() == "nosniff",
                         expected=f"X-Content-Type-Options: nosniff on {reply.response.request.method} "
                                  f"{reply.response.url.copy_with(query=None)}",
                         actual=f"X-Content-Type-Options: {value or '(absent)'}", exchange=reply.exchange)


@pytest.mark.requirement("FHIR-SEC-03")
@proves(Fault.SERVER_BANNER)
def test_no_server_banner(http: RecordingClient, target: Target, launch: LaunchResult) -> None:
    """Successful responses name no server software version (Server, X-Powered-By, X-AspNet-Version)."""
    for reply in (_member_read(http, target, launch),
                  call(http, "GET", f"{target.fhir_base_url}/metadata")):
        found = disclosure(reply)
        expect(found is None, expected="no product/version banner in headers or body", actual=found,
               exchange=reply.exchange)


def _credentials_to(reply: Reply, origin: str) -> str | None:
    allow = reply.response.headers.get("access-control-allow-origin", "")
    creds = reply.response.headers.get("access-control-allow-credentials", "").strip().lower() == "true"
    if creds and allow.strip() in ("*", origin):
        return f"Access-Control-Allow-Origin: {allow} with Access-Control-Allow-Credentials: true"
    return None


@pytest.mark.requirement("HTTP-HYG-03", "SMART-SEC-01", "SAFETY-37")
@proves(Fault.CORS_WILDCARD_CREDENTIALS)
def test_cors_no_credentials_for_any_origin(http: RecordingClient, target: Target, launch: LaunchResult,
                                            smart_config: dict[str, Any]) -> None:
    """Neither '*' nor an arbitrary reflected Origin is combined with Access-Control-Allow-Credentials: true.

    A credentialed grant to any origin breaks HTTP-HYG-03 (SHOULD NOT) and SAFETY-37 (SHOULD): it is a warning.
    SMART-SEC-01 (SHALL) asks a server that supports browser apps to *enable* CORS for registered origins; an
    over-broad grant does not break it, so the finding never takes its level.
    """
    _controls(http, target, launch, "judging the CORS answer of the member's read")
    replies = [_member_read(http, target, launch, Origin=EVIL_ORIGIN)]
    if isinstance(smart_config.get("token_endpoint"), str):
        replies.append(call(http, "POST", smart_config["token_endpoint"],
                            headers={"Accept": "application/json", "Origin": EVIL_ORIGIN},
                            data={"grant_type": "authorization_code", "code": "smart-conformance-none"}))
    for reply in replies:
        found = _credentials_to(reply, EVIL_ORIGIN)
        expect(found is None, expected=f"no credentialed CORS grant to {EVIL_ORIGIN}", actual=found,
               requirement=("HTTP-HYG-03", "SAFETY-37"), exchange=reply.exchange)


def _crafted_origins(url: str) -> dict[str, str]:
    """Origins an allow list that matches loosely lets through, built from an origin of the target's own: the
    sandboxed-iframe ``null``, a look-alike host ending in the real one, the real host as a subdomain of another
    domain, and the real origin over plain http."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", f":{parts.port}" if parts.port else ""
    return {"null": "null", "look-alike": f"https://smart-conformance-{host}{port}",
            "subdomain of another domain": f"https://{host}.smart-conformance.example{port}",
            "scheme changed to http": f"http://{host}{port}"}


@pytest.mark.requirement("ASVS-CORS-01", "HTTP-HYG-03")
@pytest.mark.parametrize("surface", ["discovery", "token", "revocation", "introspection", "FHIR", *FHIR_SURFACES])
@proves(Fault.CORS_ORIGIN_LOOSE_MATCH, Fault.CORS_WILDCARD_CREDENTIALS)
def test_cors_origin_matching_strict(surface: str, http: RecordingClient, target: Target, launch: LaunchResult,
                                     smart_config: dict[str, Any]) -> None:
    """The null origin, a look-alike of the endpoint's own host, that host as a subdomain of another domain and its
    origin over http each get no credentialed CORS grant: an allow list compares origins exactly. Probed on
    discovery, the token, revocation and introspection endpoints (a request without client credentials), the member's
    read and the other FHIR surfaces (``FHIR_SURFACES``: the claims search, its next link, an ``_include`` search,
    ``$everything``, each beside its positive control with the member's token)."""
    base = target.fhir_base_url
    send: dict[str, Any]
    if surface == "discovery":
        url = f"{base}/.well-known/smart-configuration"
        send = {"method": "GET", "headers": {"Accept": "application/json"}}
    elif surface in ("token", "revocation", "introspection"):
        url = smart_config.get(f"{surface}_endpoint")
        if not isinstance(url, str):
            not_applicable(f"the SMART configuration names no {surface}_endpoint")
        form = {"token": "smart-conformance-none"} if surface != "token" else {
            "grant_type": "authorization_code", "code": "smart-conformance-none"}
        send = {"method": "POST", "headers": {"Accept": "application/json"}, "data": form}
    elif surface == "FHIR":
        _controls(http, target, launch, "judging the CORS answers of the member's read")
        url = f"{base}/Patient/{target.member.patient_id}"
        send = {"method": "GET", "token": launch.token.access_token}
    else:
        found = fhir_surface(http, base, target.member.patient_id, launch.token.access_token, surface)
        require_surface(found, verdict=f"judging the CORS answers of the {surface}")
        url = found.url
        send = {"method": "GET", "token": launch.token.access_token, "params": found.params}
    with expectations() as check:  # each crafted origin is its own finding
        for label, origin in _crafted_origins(url).items():
            reply = call(http, send["method"], url, token=send.get("token"), data=send.get("data"),
                         params=send.get("params"), headers={**send.get("headers", {}), "Origin": origin})
            check.expect(_credentials_to(reply, origin) is None,
                         expected=f"{surface}: no credentialed CORS grant to the {label} origin {origin}",
                         actual=_credentials_to(reply, origin), requirement="ASVS-CORS-01", exchange=reply.exchange)


@pytest.mark.requirement("HTTP-HYG-03", "SAFETY-37")
@proves(Fault.CORS_WILDCARD_CREDENTIALS)
def test_cors_preflight_sane(http: RecordingClient, target: Target) -> None:
    """A preflight from an arbitrary origin gets 2xx or 4xx (not 5xx) and no credentialed grant to that origin."""
    reply = call(http, "OPTIONS", f"{target.fhir_base_url}/Patient/{target.member.patient_id}",
                 headers={"Origin": EVIL_ORIGIN, "Access-Control-Request-Method": "GET",
                          "Access-Control-Request-Headers": "authorization"})
    expect(reply.status < 500, expected="preflight answered 2xx/204 or 4xx", actual=f"HTTP {reply.status}",
           exchange=reply.exchange)
    found = _credentials_to(reply, EVIL_ORIGIN)
    expect(found is None, expected=f"no credentialed CORS grant to {EVIL_ORIGIN} in the preflight", actual=found,
           exchange=reply.exchange)
