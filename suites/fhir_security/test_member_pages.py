"""The member's sign-in pages

OAuth 2.0 Security BCP §4.16 (clickjacking), RFC 6749 §10.12 (CSRF) and §10.14 (code injection), FHIR R4
security.html and OWASP ASVS 4.0.3 V3.4 and V5.3: the pages where the member signs in and authorizes an app cannot be
framed by another site (X-Frame-Options or CSP frame-ancestors); their forms cannot be submitted cross-site (a sign-in
post that lacks the page's anti-forgery token and the cookie the page set is refused); the cookies they set are
Secure, HttpOnly and SameSite; they send a Referrer-Policy that keeps the request in their URL from other sites and a
Content-Security-Policy (RFC 9700 §4.2.4, ASVS V14.4); and whatever they echo of a request (the authorize endpoint's
error pages, the sign-in and consent pages) comes back escaped, never as markup on the payer's origin, where the
member's session lives.

The pages are judged as the browser rendered them on a real launch, so a sign-in built by script, or spread over a
username page and a password page, is seen as the member sees it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest

from smart_conformance.browser import PageDocument, PageForm, SetCookie, Step, compose_steps
from smart_conformance.checks import could_not_check, expect, expectations, not_applicable
from smart_conformance.config import Target
from smart_conformance.fhir import Reply, disclosure
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import Launcher
from smart_conformance.markup import is_html, landed, new_mark, payload
from smart_conformance.plugin import build_client
from smart_conformance.smart.authorize import AuthorizationRequest, standard_request
from smart_conformance.testplan import Fault, proves

REDIRECTS = (301, 302, 303, 307, 308)
CSRF_NAME = re.compile(r"csrf|xsrf|authenticity|forgery|requestverification|token", re.IGNORECASE)
PASSWORD_VALUE = re.compile(r"\$\{\s*member\.password\s*\}")


def _frame_protection(document: PageDocument) -> str | None:
    xfo = document.headers.get("x-frame-options", "").strip().upper()
    if xfo in ("DENY", "SAMEORIGIN"):
        return f"X-Frame-Options: {xfo}"
    for policy in document.headers.get("content-security-policy", "").split(","):
        match = re.search(r"frame-ancestors\s+([^;]+)", policy, re.IGNORECASE)
        if match and "*" not in match.group(1).split():
            return f"CSP frame-ancestors {match.group(1).strip()}"
    return None


@pytest.mark.requirement("OAUTHBCP-04", "HTTP-HYG-02")
@proves(Fault.CONSENT_PAGE_FRAMEABLE)
def test_sign_in_pages_not_frameable(launcher: Launcher) -> None:
    """Every HTML page of the sign-in and consent, as loaded by the launch, forbids framing by another site."""
    control, problem = launcher.control()
    if control is None:
        could_not_check(f"the sign-in pages were never reached: {problem}")
    pages = [d for d in control.browser.documents if d.status < 400 and "html" in d.headers.get("content-type", "")]
    if not pages:
        could_not_check("the launch loaded no HTML page before the redirect (no sign-in or consent page to judge)")
    for document in pages:
        expect(_frame_protection(document) is not None,
               expected="X-Frame-Options DENY/SAMEORIGIN or Content-Security-Policy frame-ancestors",
               actual=f"{document.url}: X-Frame-Options {document.headers.get('x-frame-options', '(absent)')}, "
                      f"CSP {document.headers.get('content-security-policy', '(absent)')}",
               requirement=("OAUTHBCP-04", "HTTP-HYG-02"))


def _password_step(steps: list[Step]) -> int:
    """Index of the recipe step that types the member's password."""
    for index, step in enumerate(steps):
        if step.action == "fill" and step.value and PASSWORD_VALUE.search(step.value):
            return index
    could_not_check("the login recipe has no fill step with ${member.password}: the password form is unknown")


def _input_for(form: PageForm, selector: str) -> dict[str, str] | None:
    """The input a recipe selector (#id, [name=x], input[name='x']) points at, in this form."""
    match = re.fullmatch(r"#([\w-]+)", selector.strip())
    if match:
        return next((dict(i) for i in form.inputs if i.get("id") == match.group(1)), None)
    match = re.search(r"\[name=['\"]?([\w.-]+)['\"]?\]", selector)
    return next((dict(i) for i in form.inputs if match and i.get("name") == match.group(1)), None)


def _forged_fields(target: Target, form: PageForm, steps: list[Step]) -> dict[str, str]:
    """The sign-in as the member would post it, minus anything that looks like an anti-forgery token."""
    fields = {i["name"]: i.get("value", "") for i in form.inputs
              if i.get("tag") == "input" and i.get("type") == "hidden" and i.get("name")
              and not CSRF_NAME.search(i["name"])}
    values = target.member.values("member")
    for step in steps:
        if step.action != "fill" or step.value is None:
            continue
        field = _input_for(form, step.target)
        if field and field.get("name"):
            fields[field["name"]] = step.resolve(values).value or ""
    if not any(i.get("type") == "password" and i.get("name") in fields for i in form.inputs):
        could_not_check("could not match the recipe's password step to the form's password input by id or name")
    return fields


def _page(url: str) -> str:
    parts = httpx.URL(url)
    return f"{parts.scheme}://{parts.host}:{parts.port}{parts.path}"


@pytest.mark.requirement("RFC6749-10")
@proves(Fault.LOGIN_NO_CSRF)
def test_sign_in_form_resists_csrf(launcher: Launcher, target: Target) -> None:
    """The password form of a live sign-in, posted by another browser without its anti-forgery token or the cookies
    the page set, is refused."""
    steps = compose_steps(launcher.recipe, "approve")
    index = _password_step(steps)
    password = steps[index]
    wait = Step("wait_for", password.target, wait_kind="selector", where=f"{password.where} (wait for the form)")
    # A live sign-in, stopped on the password form: the member's own session, as a forger would find it.
    victim = launcher.launch(steps=[*steps[:index], wait], exchange=False, expect_redirect=False)
    form = next((f for f in victim.browser.forms
                 if any(i.get("type") == "password" for i in f.inputs) and f.method == "post"), None)
    if form is None:
        could_not_check(f"the page with the password field ({victim.browser.page_url}) has no POST form holding it")
    fields = _forged_fields(target, form, steps)
    with build_client(target) as attacker:  # another browser: none of the page's cookies
        response = attacker.post(form.action, data=fields)
        chain = [response]
        while response.status_code in REDIRECTS and response.headers.get("location") and len(chain) <= 10:
            nxt = urljoin(str(response.url), response.headers["location"])
            if nxt.startswith(target.client.redirect_uri):
                break
            response = attacker.get(nxt)
            chain.append(response)
        final = chain[-1]
        location = final.headers.get("location", "")
        bounced = final.status_code < 300 and _page(str(final.url)) == _page(form.action)
        refused = final.status_code >= 400 or bounced or (
            "html" in final.headers.get("content-type", "") and 'type="password"' in final.text.lower())
        expect(refused and not location.startswith(target.client.redirect_uri),
               expected="the forged sign-in refused (4xx, or the sign-in form shown again)",
               actual=f"accepted: HTTP {chain[0].status_code} → {final.status_code} {final.url}",
               exchange=attacker.exchange_for(chain[0]))


# --- cookies ---------------------------------------------------------------------------------------------------------
SCRIPT_READABLE = re.compile(r"csrf|xsrf", re.IGNORECASE)  # double-submit anti-CSRF cookies are read by the page


def _set_cookie(cookie: SetCookie) -> str:
    """The header as sent, its value left out (a session id is a secret)."""
    flags = "; ".join(f"{k}={v}" if v else k for k, v in cookie.attributes.items())
    return f"Set-Cookie: {cookie.name}=…" + (f"; {flags}" if flags else "") + f" (from {cookie.url})"


@pytest.mark.requirement("ASVS-SESS-01", "ASVS-SESS-02", "ASVS-SESS-03")
@proves(Fault.SESSION_COOKIE_UNPROTECTED)
def test_member_page_cookies_protected(launcher: Launcher, target: Target) -> None:
    """Every cookie the authorization server sets while the member signs in and consents, as the browser received
    it on a real launch, is Secure, HttpOnly (unless the page's own script must read it: a double-submit anti-CSRF
    cookie, or one the target lists in ``login.script_readable_cookies``) and states its SameSite: Strict or Lax, or
    None together with Secure, the level a hosted identity provider's cross-site session check needs."""
    control, problem = launcher.control()
    if control is None:
        could_not_check(f"the sign-in pages were never reached: {problem}")
    kept = [c for c in control.browser.cookies if not c.deleted]
    if not kept:
        not_applicable("the authorization server set no cookie while the member signed in and consented")
    readable = target.login.script_readable_cookies if target.login else frozenset()
    with expectations() as check:  # each attribute of each cookie is its own finding
        for cookie in kept:
            seen, attrs = _set_cookie(cookie), cookie.attributes
            check.expect("secure" in attrs, expected=f"cookie {cookie.name}: Secure", actual=seen,
                         requirement="ASVS-SESS-01")
            if not (SCRIPT_READABLE.search(cookie.name) or cookie.name in readable):
                check.expect("httponly" in attrs, expected=f"cookie {cookie.name}: HttpOnly (no script reads it)",
                             actual=seen, requirement="ASVS-SESS-02")
            same_site = attrs.get("samesite", "").lower()
            check.expect(same_site in ("strict", "lax") or (same_site == "none" and "secure" in attrs),
                         expected=f"cookie {cookie.name}: SameSite=Strict or Lax (None only with Secure)",
                         actual=seen, requirement="ASVS-SESS-03")


# --- reflected input -------------------------------------------------------------------------------------------------
UNKNOWN_CLIENT = "smart-conformance-unknown-client"
MAX_HOPS = 5


def _with(url: str, name: str, value: str) -> str:
    """``url`` with query parameter ``name`` set to ``value`` (the others as they were)."""
    parts = urlsplit(url)
    query = [(k, value if k == name else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _fetch(client: RecordingClient, url: str, own: set[str]) -> httpx.Response:
    """GET, following redirects only within the authorization server's own origins: never to an app."""
    response = client.get(url)
    for _ in range(MAX_HOPS):
        location = response.headers.get("location")
        if response.status_code not in REDIRECTS or not location:
            break
        nxt = urljoin(str(response.url), location)
        if _origin(nxt) not in own:
            break
        response = client.get(nxt)
    return response


def _authorize_probes(target: Target, endpoint: str, marker: str) -> list[tuple[str, str]]:
    """The authorization request with the marker in one parameter at a time: with an unknown client (the error page
    of an untrusted request), with the real client and an unregistered redirect_uri, and with the real client and
    its registered redirect_uri (the error or sign-in page that follows). Each only starts a sign-in, at most."""
    request, _ = standard_request(client_id=target.client.client_id, redirect_uri=target.client.redirect_uri,
                                  scope=target.scopes["full"], aud=target.fhir_base_url)
    unknown = request.but(client_id=UNKNOWN_CLIENT)
    probes: list[tuple[str, AuthorizationRequest]] = [("client_id (unknown client)", request.but(client_id=marker))]
    probes += [(f"{name} (unknown client)", unknown.but(**{name: marker}))
               for name, _ in unknown.params() if name != "client_id"]
    probes.append(("redirect_uri (unregistered)", request.but(redirect_uri=marker)))
    probes += [(name, request.but(**{name: marker})) for name in (*(n for n, _ in request.params()
               if n not in ("client_id", "redirect_uri")), "login_hint")]
    return [(f"authorize: {label}", probe.to_url(endpoint)) for label, probe in probes]


def _page_probes(documents: list[PageDocument], marker: str) -> list[tuple[str, str]]:
    """Each page the browser loaded on the launch, with the marker in one query parameter at a time."""
    probes = []
    for document in documents:
        names = [k for k, _ in parse_qsl(urlsplit(document.url).query, keep_blank_values=True)]
        path = urlsplit(document.url).path
        probes += [(f"{path}: {name}", _with(document.url, name, marker)) for name in dict.fromkeys(names)]
    return probes


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
    probes = _authorize_probes(target, endpoint, marker) if isinstance(endpoint, str) else []
    documents = [d for d in control.browser.documents if d.status < 400] if control is not None else []
    probes += _page_probes(documents, marker)
    own = {_origin(u) for u in (endpoint, *(d.url for d in documents)) if isinstance(u, str)}
    judged = 0
    with build_client(target) as client, expectations() as check:  # every page judged, each landing a finding
        for label, url in probes:
            response = _fetch(client, url, own)
            judged += is_html(response)
            for where in landed(response, mark):
                check.fail(expected=f"{label}: the marker echoed escaped, or not at all",
                           actual=f"HTTP {response.status_code} from {_origin(str(response.url))}"
                                  f"{response.url.path}: {where}",
                           exchange=client.exchange_for(response))
    if not judged:
        not_applicable(f"none of the {len(probes)} probes came back as an HTML page (JSON errors, redirects to the "
                       "app, or bodiless refusals): nothing echoed can run as markup")


# --- junk input ------------------------------------------------------------------------------------------------------
JUNK = {"SQL-shaped": "x' OR '1'='1' --", "8 KB": "A" * 8192, "control and unicode": "\u202e\U0001d54f\u0000\ufeff"}


@pytest.mark.requirement("FHIR-SEC-13", "FHIR-SEC-03")
@proves(Fault.AUTHORIZE_JUNK_500, Fault.SERVER_BANNER)
def test_member_pages_refuse_junk_cleanly(launcher: Launcher, target: Target, smart_config: dict[str, Any]) -> None:
    """The same pages, with injection-shaped, 8 KB and control-character values in each query parameter, answer
    without a server error and without naming their software or showing a stack trace: input is validated before it
    reaches code that breaks on it, and what breaks stays inside."""
    control, _problem = launcher.control()
    endpoint = smart_config.get("authorization_endpoint")
    documents = [d for d in control.browser.documents if d.status < 400] if control is not None else []
    own = {_origin(u) for u in (endpoint, *(d.url for d in documents)) if isinstance(u, str)}
    probes = [(f"{label} ({kind})", url) for kind, value in JUNK.items()
              for label, url in ((_authorize_probes(target, endpoint, value) if isinstance(endpoint, str) else [])
                                 + _page_probes(documents, value))]
    if not probes:
        not_applicable("no authorization endpoint and no page of the member's path to probe")
    with build_client(target) as client, expectations() as check:  # every answer judged, each problem a finding
        for label, url in probes:
            response = _fetch(client, url, own)
            seen = f"HTTP {response.status_code} from {_origin(str(response.url))}{response.url.path}"
            check.expect(response.status_code < 500, expected=f"{label}: a page, a redirect or a 4xx, not a server "
                         "error", actual=seen, requirement="FHIR-SEC-13", exchange=client.exchange_for(response))
            found = disclosure(Reply(response, None))
            check.expect(found is None, expected=f"{label}: no stack trace, framework or version in the answer",
                         actual=f"{seen}: {found}", requirement="FHIR-SEC-03", exchange=client.exchange_for(response))


# --- RFC 9700 §4.2.4, ASVS V14.4.3 and V14.4.6: Referrer-Policy and Content-Security-Policy ----------------------------
PRIVATE_REFERRERS = frozenset({"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin",
                               "origin", "origin-when-cross-origin"})  # none sends a path or query to another site
REFERRER_POLICIES = PRIVATE_REFERRERS | {"unsafe-url", "no-referrer-when-downgrade"}


def _referrer_policy(value: str) -> str | None:
    """The policy a browser applies: the last one it knows in the header (W3C Referrer Policy §11.1)."""
    known = [t for t in re.split(r"[,\s]+", value.strip().lower()) if t in REFERRER_POLICIES]
    return known[-1] if known else None


@pytest.mark.requirement("ASVS-REFERRER-01", "ASVS-CSP-01")
@proves(Fault.SIGN_IN_PAGES_WITHOUT_REFERRER_POLICY, Fault.CONSENT_PAGE_FRAMEABLE)
def test_sign_in_pages_limit_referrer_and_scripts(launcher: Launcher, target: Target,
                                                  smart_config: dict[str, Any]) -> None:
    """Every HTML page of the member's path (the sign-in and consent pages of a real launch, and the authorize
    endpoint's error page for an unknown client) sends a Referrer-Policy that keeps its URL's query, the request, from
    other sites, and a Content-Security-Policy."""
    control, problem = launcher.control()
    pages: list[tuple[str, int, Any, Any]] = [
        (d.url, d.status, d.headers, None) for d in (control.browser.documents if control is not None else [])
        if d.status < 400 and "html" in d.headers.get("content-type", "")]
    endpoint = smart_config.get("authorization_endpoint")
    if isinstance(endpoint, str):
        request, _ = standard_request(client_id=UNKNOWN_CLIENT, redirect_uri=target.client.redirect_uri,
                                      scope=target.scopes["full"], aud=target.fhir_base_url)
        with build_client(target) as client:  # no cookies; an unknown client starts nothing
            response = _fetch(client, request.to_url(endpoint), {_origin(endpoint)})
            if is_html(response):  # a bodiless or JSON refusal is no page
                pages.append((f"{_origin(str(response.url))}{response.url.path} (unknown client)",
                              response.status_code, response.headers, client.exchange_for(response)))
    if not pages:
        could_not_check(f"no HTML page of the member's path was reached: {problem or 'the launch loaded none'}")
    with expectations() as check:  # each header of each page is its own finding
        for url, status, headers, exchange in pages:
            value = headers.get("referrer-policy", "")
            check.expect(_referrer_policy(value) in PRIVATE_REFERRERS,
                         expected=f"{url}: a Referrer-Policy that sends no path or query to other sites "
                                  f"({', '.join(sorted(PRIVATE_REFERRERS))})",
                         actual=f"HTTP {status}, Referrer-Policy: {value or '(absent)'}",
                         requirement="ASVS-REFERRER-01", exchange=exchange)
            check.expect(bool(headers.get("content-security-policy", "").strip()),
                         expected=f"{url}: a Content-Security-Policy header",
                         actual=f"HTTP {status}, no Content-Security-Policy", requirement="ASVS-CSP-01",
                         exchange=exchange)


# --- RFC 9700 §4.12: no 307 after the sign-in post ----------------------------------------------------------------------
@pytest.mark.requirement("OAUTHBCP-05")
@proves(Fault.SIGN_IN_307)
def test_sign_in_post_not_redirected_with_307(launcher: Launcher) -> None:
    """Every redirect that answered a form post on the member's path (the sign-in, the consent), as the browser
    followed it on a real launch, is a 302 or 303: a 307 or 308 would make the browser post the member's password
    again, to wherever it points."""
    control, problem = launcher.control()
    if control is None:
        could_not_check(f"the sign-in pages were never reached: {problem}")
    posts = [hop for hop in control.browser.hops if hop.method == "POST"]
    if not posts:
        not_applicable("no form post on the member's path was answered with a redirect (nothing to judge)")
    with expectations() as check:
        for hop in posts:
            check.expect(hop.status not in (307, 308), expected=f"the POST to {hop.url} redirected with 302 or 303",
                         actual=f"HTTP {hop.status}: the browser re-sends the posted form, password included")


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
    own = {_origin(d.url) for d in documents}
    with build_client(target) as client, expectations() as check:
        for document in documents:
            parts = urlsplit(document.url)
            query = "&".join(q for q in (parts.query, urlencode({name: FOREIGN for name in RETURN_PARAMS})) if q)
            response = _fetch(client, urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")), own)
            location = urljoin(str(response.url), response.headers.get("location", ""))
            check.expect(not (response.status_code in REDIRECTS and _origin(location) == _origin(FOREIGN)),
                         expected=f"{parts.path} with return-to parameters naming {FOREIGN}: no redirect there",
                         actual=f"HTTP {response.status_code} Location: {location}",
                         exchange=client.exchange_for(response))
