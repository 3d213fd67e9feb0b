"""The member's sign-in pages

OAuth 2.0 Security BCP §4.16 (clickjacking) and §4.12, RFC 6749 §10.12 (CSRF), FHIR R4 security.html and OWASP
ASVS 4.0.3 V3.4 and V14.4: the pages where the member signs in and authorizes an app cannot be
framed by another site (X-Frame-Options or CSP frame-ancestors); their forms cannot be submitted cross-site (a sign-in
post that lacks the page's anti-forgery token and the cookie the page set is refused); the cookies they set are
Secure, HttpOnly and SameSite; they send a Referrer-Policy that keeps the request in their URL from other sites and a
Content-Security-Policy (RFC 9700 §4.2.4, ASVS V14.4); and no form post on the way is answered with a 307 or 308,
which would post the password again (RFC 9700 §4.12). What the pages do with request input is judged in
test_member_page_input.py.

The pages are judged as the browser rendered them on a real launch, so a sign-in built by script, or spread over a
username page and a password page, is seen as the member sees it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from smart_conformance.browser import PageDocument, PageForm, SetCookie, Step, compose_steps
from smart_conformance.checks import could_not_check, expect, expectations, not_applicable
from smart_conformance.config import Target
from smart_conformance.launcher import Launcher
from smart_conformance.markup import is_html
from smart_conformance.member_pages import REDIRECTS, fetch_within, origin, unknown_client_request
from smart_conformance.plugin import build_client
from smart_conformance.testplan import Fault, production_unsafe, proves

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
               requirement=("OAUTHBCP-04", "HTTP-HYG-02"),
               seen=f"the browser loaded {document.url} (HTTP {document.status}) on the member's launch")


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
@production_unsafe("posts a forged sign-in form with the member's password from another client")
def test_sign_in_form_resists_csrf(launcher: Launcher, target: Target) -> None:
    """The password form of a live sign-in, posted by another browser without its anti-forgery token or the cookies
    the page set, is refused."""
    steps = compose_steps(launcher.recipe, "approve")
    index = _password_step(steps)
    password = steps[index]
    wait = Step("wait_for", password.target, wait_kind="selector", where=f"{password.where} (wait for the form)")
    # A live sign-in, stopped on the password form: the member's own session, as a forger would find it.
    victim = launcher.launch(steps=[*steps[:index], wait], exchange=False, expect_redirect=False,
                             fresh_sign_in=True)
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
            where = f"the browser received {seen} on the member's launch"
            check.expect("secure" in attrs, expected=f"cookie {cookie.name}: Secure", actual=seen,
                         requirement="ASVS-SESS-01", seen=where)
            if not (SCRIPT_READABLE.search(cookie.name) or cookie.name in readable):
                check.expect("httponly" in attrs, expected=f"cookie {cookie.name}: HttpOnly (no script reads it)",
                             actual=seen, requirement="ASVS-SESS-02", seen=where)
            same_site = attrs.get("samesite", "").lower()
            check.expect(same_site in ("strict", "lax") or (same_site == "none" and "secure" in attrs),
                         expected=f"cookie {cookie.name}: SameSite=Strict or Lax (None only with Secure)",
                         actual=seen, requirement="ASVS-SESS-03", seen=where)


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
        request = unknown_client_request(target)
        with build_client(target) as client:  # no cookies; an unknown client starts nothing
            response = fetch_within(client, request.to_url(endpoint), {origin(endpoint)})
            if is_html(response):  # a bodiless or JSON refusal is no page
                pages.append((f"{origin(str(response.url))}{response.url.path} (unknown client)",
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
                         requirement="ASVS-REFERRER-01", exchange=exchange, seen=f"the browser loaded {url}")
            check.expect(bool(headers.get("content-security-policy", "").strip()),
                         expected=f"{url}: a Content-Security-Policy header",
                         actual=f"HTTP {status}, no Content-Security-Policy", requirement="ASVS-CSP-01",
                         exchange=exchange, seen=f"the browser loaded {url}")


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
                         actual=f"HTTP {hop.status}: the browser re-sends the posted form, password included",
                         seen=f"the browser's POST to {hop.url} answered HTTP {hop.status} on the member's launch")
