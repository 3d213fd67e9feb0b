"""The member's sign-in pages

OAuth 2.0 Security BCP §4.16 (clickjacking), RFC 6749 §10.12 (CSRF) and FHIR R4 security.html: the pages where the
member signs in and authorizes an app cannot be framed by another site (X-Frame-Options or CSP frame-ancestors), and
their forms cannot be submitted cross-site: a sign-in post that lacks the page's anti-forgery token and the cookie the
page set is refused.

The pages are judged as the browser rendered them on a real launch, so a sign-in built by script, or spread over a
username page and a password page, is seen as the member sees it.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx
import pytest

from smart_conformance.browser import PageDocument, PageForm, Step, compose_steps
from smart_conformance.checks import could_not_check, expect
from smart_conformance.config import Target
from smart_conformance.launcher import Launcher
from smart_conformance.plugin import build_client
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
