"""The member's sign-in pages

OAuth 2.0 Security BCP §4.16 (clickjacking), RFC 6749 §10.12 (CSRF) and FHIR R4 security.html: the pages where the
member signs in and authorizes an app cannot be framed by another site (X-Frame-Options or CSP frame-ancestors), and
their forms cannot be submitted cross-site: a sign-in post that lacks the page's anti-forgery token and the cookie the
page set is refused. The pages are reached black-box, by following the authorization request's redirects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from smart_conformance.checks import could_not_check, expect
from smart_conformance.config import Target
from smart_conformance.http import RecordingClient
from smart_conformance.plugin import build_client
from smart_conformance.smart.authorize import standard_request

REDIRECTS = (301, 302, 303, 307, 308)
CSRF_NAME = re.compile(r"csrf|xsrf|authenticity|forgery|requestverification|token", re.IGNORECASE)


@dataclass
class Form:
    action: str
    method: str
    inputs: list[dict[str, str]] = field(default_factory=list)


class _Forms(HTMLParser):
    """Every <form> with its <input>s (and <button name=…>): enough to replay a sign-in form."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(values.get("action", ""), values.get("method", "get").lower()))
            self._open = True
        elif tag in ("input", "button") and self._open:
            self.forms[-1].inputs.append({"tag": tag, **values})

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = False


def forms_of(html: str) -> list[Form]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def _is_html(response: httpx.Response) -> bool:
    return "html" in response.headers.get("content-type", "").lower()


def _has_password(response: httpx.Response) -> bool:
    return _is_html(response) and any(i.get("type", "").lower() == "password"
                                      for f in forms_of(response.text) for i in f.inputs)


def follow(client: RecordingClient, response: httpx.Response, stop_at: str) -> list[httpx.Response]:
    """Follow redirects by hand (at most 10), stopping before the app's redirect_uri (nothing listens there)."""
    chain = [response]
    while response.status_code in REDIRECTS and response.headers.get("location") and len(chain) <= 10:
        nxt = urljoin(str(response.url), response.headers["location"])
        if nxt.startswith(stop_at):
            break
        response = client.get(nxt)
        chain.append(response)
    return chain


@contextmanager
def fresh_client(target: Target) -> Iterator[RecordingClient]:
    """A client with its own (empty) cookie jar, like a browser profile of its own."""
    client = build_client(target)
    try:
        yield client
    finally:
        client.close()


def open_sign_in(client: RecordingClient, target: Target, smart_config: dict[str, Any]) -> list[httpx.Response]:
    """GET a conformant authorization request and follow it to the sign-in page."""
    endpoint = smart_config.get("authorization_endpoint")
    if not isinstance(endpoint, str):
        could_not_check("smart-configuration has no authorization_endpoint")
    request, _ = standard_request(client_id=target.client.client_id, redirect_uri=target.client.redirect_uri,
                                  scope=target.scopes["full"], aud=target.fhir_base_url)
    chain = follow(client, client.get(request.to_url(endpoint)), target.client.redirect_uri)
    if not _has_password(chain[-1]):
        could_not_check(f"following the authorization request did not reach a sign-in form with a password field "
                        f"(ended at HTTP {chain[-1].status_code} {chain[-1].url})")
    return chain


def _frame_protection(response: httpx.Response) -> str | None:
    xfo = response.headers.get("x-frame-options", "").strip().upper()
    if xfo in ("DENY", "SAMEORIGIN"):
        return f"X-Frame-Options: {xfo}"
    for policy in response.headers.get_list("content-security-policy"):
        match = re.search(r"frame-ancestors\s+([^;]+)", policy, re.IGNORECASE)
        if match and "*" not in match.group(1).split():
            return f"CSP frame-ancestors {match.group(1).strip()}"
    return None


@pytest.mark.requirement("OAUTHBCP-04", "HTTP-HYG-02")
def test_sign_in_pages_not_frameable(target: Target, smart_config: dict[str, Any]) -> None:
    """Every HTML page on the way to the sign-in form sends X-Frame-Options DENY/SAMEORIGIN or CSP frame-ancestors."""
    with fresh_client(target) as client:
        chain = open_sign_in(client, target, smart_config)
        for response in (r for r in chain if _is_html(r)):
            expect(_frame_protection(response) is not None,
                   expected="X-Frame-Options DENY/SAMEORIGIN or Content-Security-Policy frame-ancestors",
                   actual=f"{response.url}: X-Frame-Options {response.headers.get('x-frame-options', '(absent)')}, "
                          f"CSP {response.headers.get('content-security-policy', '(absent)')}",
                   requirement=("OAUTHBCP-04", "HTTP-HYG-02"), exchange=client.exchange_for(response))


def _field_name(form: Form, selector: str) -> str | None:
    """The name of the input a recipe selector (#id, [name=x], input[name='x']) points at."""
    match = re.fullmatch(r"#([\w-]+)", selector.strip())
    if match:
        return next((i.get("name") for i in form.inputs if i.get("id") == match.group(1)), None)
    match = re.search(r"\[name=['\"]?([\w.-]+)['\"]?\]", selector)
    return match.group(1) if match else None


def _credential_fields(target: Target, form: Form) -> tuple[str, str]:
    """Username and password field names: from the recipe's first two fill steps, else the form's own inputs."""
    fills = [s["fill"]["selector"] for s in (target.login.steps if target.login else ())
             if isinstance(s, dict) and isinstance(s.get("fill"), dict) and "selector" in s["fill"]]
    names = [_field_name(form, sel) for sel in fills[:2]]
    if len(names) == 2 and all(names):
        return str(names[0]), str(names[1])
    password = next((i.get("name") for i in form.inputs if i.get("type", "").lower() == "password"), None)
    user = next((i.get("name") for i in form.inputs
                 if i.get("type", "text").lower() in ("text", "email") and i.get("name")), None)
    if not (user and password):
        could_not_check("could not tell the sign-in form's username and password fields from the recipe selectors")
    return str(user), str(password)


@pytest.mark.requirement("RFC6749-10")
def test_sign_in_form_resists_csrf(target: Target, smart_config: dict[str, Any]) -> None:
    """The sign-in form, posted with valid credentials but without its anti-forgery token and cookies, is refused."""
    with fresh_client(target) as victim:
        page = open_sign_in(victim, target, smart_config)[-1]
        form = next((f for f in forms_of(page.text) if any(i.get("type", "").lower() == "password"
                                                            for i in f.inputs)), None) or forms_of(page.text)[0]
    user, password = _credential_fields(target, form)
    fields = {i["name"]: i.get("value", "") for i in form.inputs
              if i.get("tag") == "input" and i.get("type", "").lower() == "hidden" and i.get("name")
              and not CSRF_NAME.search(i["name"])}
    fields.update({user: target.member.username, password: target.member.password})
    action = urljoin(str(page.url), form.action or str(page.url))
    with fresh_client(target) as attacker:  # another browser: none of the page's cookies
        chain = follow(attacker, attacker.post(action, data=fields), target.client.redirect_uri)
        final = chain[-1]
        refused = final.status_code >= 400 or _has_password(final)
        expect(refused, expected="the forged sign-in refused (4xx, or the sign-in form shown again)",
               actual=f"accepted: HTTP {chain[0].status_code} → {final.status_code} {final.url}",
               exchange=attacker.exchange_for(chain[0]))
