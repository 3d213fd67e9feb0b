"""What the member's pages do with request input

OWASP ASVS 4.0.3 V5.1 and V5.3, RFC 6749 §10.14, RFC 9700 §4.11 and FHIR R4 security.html: the pages of the member's
path are where the member's session lives, so whatever they echo of a request comes back escaped, never as markup on
the payer's origin (reflected script); injection-shaped, oversized and control-character values are answered without
a server error and without a stack trace or a software banner; and no return-to parameter sends the browser to a
site of an attacker's choosing.

The pages probed are the authorization endpoint's answers (its error pages for an unknown client or an unregistered
redirect_uri, and the sign-in it starts) and every page the browser loaded on a real launch (sign-in, consent),
requested again one parameter at a time by a client with no cookies (smart_conformance.member_pages): a probe starts
a sign-in at most and changes nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import pytest

from smart_conformance.checks import could_not_check, expectations, not_applicable
from smart_conformance.config import Target
from smart_conformance.fhir import Reply, disclosure
from smart_conformance.launcher import Launcher
from smart_conformance.markup import is_html, landed, new_mark, payload
from smart_conformance.member_pages import REDIRECTS, authorize_probes, fetch_within, origin, page_probes
from smart_conformance.plugin import build_client
from smart_conformance.testplan import Fault, proves


# --- reflected input -------------------------------------------------------------------------------------------------
@pytest.mark.requirement("ASVS-ENC-01")
@proves(Fault.AUTHORIZE_ERROR_REFLECTS_INPUT)
def test_html_pages_escape_reflected_input(launcher: Launcher, target: Target, smart_config: dict[str, Any]) -> None:
    """Every HTML page the harness reaches on the member's path (the authorize endpoint's error pages for an unknown
    client or an unregistered redirect_uri, and the sign-in and consent pages of a real launch) is requested again
    with a marker in each query parameter: the marker may come back as escaped text or attribute value, never as an
    element of the page or as quotes breaking out of a script. Requests come from a client with no cookies; they
    start a sign-in at most and change nothing."""
    mark = new_mark()
    marker = payload(mark)
    control, _problem = launcher.control()
    endpoint = smart_config.get("authorization_endpoint")
    probes = authorize_probes(target, endpoint, marker) if isinstance(endpoint, str) else []
    documents = [d for d in control.browser.documents if d.status < 400] if control is not None else []
    probes += page_probes(documents, marker)
    own = {origin(u) for u in (endpoint, *(d.url for d in documents)) if isinstance(u, str)}
    judged = 0
    with build_client(target) as client, expectations() as check:  # every page judged, each landing a finding
        for label, url in probes:
            response = fetch_within(client, url, own)
            judged += is_html(response)
            for where in landed(response, mark):
                check.fail(expected=f"{label}: the marker echoed escaped, or not at all",
                           actual=f"HTTP {response.status_code} from {origin(str(response.url))}"
                                  f"{response.url.path}: {where}",
                           exchange=client.exchange_for(response))
    if not judged:
        not_applicable(f"none of the {len(probes)} probes came back as an HTML page (JSON errors, redirects to the "
                       "app, or bodiless refusals): nothing echoed can run as markup")


# --- junk input ------------------------------------------------------------------------------------------------------
JUNK = {"SQL-shaped": "x' OR '1'='1' --", "8 KB": "A" * 8192, "control and unicode": "\u202e\U0001d54f\u0000\ufeff"}


@pytest.mark.requirement("FHIR-SEC-13", "FHIR-SEC-03")
@proves(Fault.AUTHORIZE_JUNK_500, Fault.SERVER_BANNER, Fault.AUTHORIZE_REFUSALS_AS_503)
def test_member_pages_refuse_junk_cleanly(launcher: Launcher, target: Target, smart_config: dict[str, Any]) -> None:
    """The same pages, with injection-shaped, 8 KB and control-character values in each query parameter, answer
    without a server error and without naming their software or showing a stack trace: input is validated before it
    reaches code that breaks on it, and what breaks stays inside."""
    control, _problem = launcher.control()
    endpoint = smart_config.get("authorization_endpoint")
    documents = [d for d in control.browser.documents if d.status < 400] if control is not None else []
    own = {origin(u) for u in (endpoint, *(d.url for d in documents)) if isinstance(u, str)}
    probes = [(f"{label} ({kind})", url) for kind, value in JUNK.items()
              for label, url in ((authorize_probes(target, endpoint, value) if isinstance(endpoint, str) else [])
                                 + page_probes(documents, value))]
    if not probes:
        not_applicable("no authorization endpoint and no page of the member's path to probe")
    with build_client(target) as client, expectations() as check:  # every answer judged, each problem a finding
        for label, url in probes:
            response = fetch_within(client, url, own)
            seen = f"HTTP {response.status_code} from {origin(str(response.url))}{response.url.path}"
            check.expect(response.status_code < 500, expected=f"{label}: a page, a redirect or a 4xx, not a server "
                         "error", actual=seen, requirement="FHIR-SEC-13", exchange=client.exchange_for(response))
            found = disclosure(Reply(response, None))
            check.expect(found is None, expected=f"{label}: no stack trace, framework or version in the answer",
                         actual=f"{seen}: {found}", requirement="FHIR-SEC-03", exchange=client.exchange_for(response))


# --- open redirection ------------------------------------------------------------------------------------------------
FOREIGN = "https://smart-conformance-attacker.example/landing"
RETURN_PARAMS = ("next", "return_to", "returnTo", "returnUrl", "return_url", "redirect", "redirect_url", "goto",
                 "continue", "url", "RelayState", "ReturnUrl", "target")


@pytest.mark.requirement("ASVS-REDIR-01")
@proves(Fault.SIGN_IN_OPEN_REDIRECT)
def test_member_pages_follow_no_foreign_return_url(launcher: Launcher, target: Target) -> None:
    """Each page of the member's path, requested with the return-to parameters sign-in pages commonly take (next,
    return_to, RelayState, ...) naming a foreign site, never redirects the browser there: a sign-in page that does is
    an open redirector on the payer's own origin, the link a phishing mail needs."""
    control, problem = launcher.control()
    if control is None:
        could_not_check(f"the sign-in pages were never reached: {problem}")
    documents = [d for d in control.browser.documents if d.status < 400]
    if not documents:
        not_applicable("the launch loaded no page before the redirect to the app")
    own = {origin(d.url) for d in documents}
    with build_client(target) as client, expectations() as check:
        for document in documents:
            parts = urlsplit(document.url)
            query = "&".join(q for q in (parts.query, urlencode({name: FOREIGN for name in RETURN_PARAMS})) if q)
            response = fetch_within(client, urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")), own)
            location = urljoin(str(response.url), response.headers.get("location", ""))
            check.expect(not (response.status_code in REDIRECTS and origin(location) == origin(FOREIGN)),
                         expected=f"{parts.path} with return-to parameters naming {FOREIGN}: no redirect there",
                         actual=f"HTTP {response.status_code} Location: {location}",
                         exchange=client.exchange_for(response))
