"""A browserless SMART standalone launch against the reference server: parse its forms, submit, follow redirects.

Kept small and explicit so each step can be replayed with one thing changed (the error-path and fault tests).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from smart_conformance.config import Target
from smart_conformance.reference.server import ReferenceServer

CALLBACK = "http://127.0.0.1:8765/callback"
OTHER_CALLBACK = "http://127.0.0.1:8766/callback"
FULL_SCOPE = ("launch/patient openid fhirUser offline_access patient/Patient.rs patient/Coverage.rs "
              "patient/ExplanationOfBenefit.rs patient/Organization.rs patient/Practitioner.rs")
TRICKY_STATE = "st@te/with spaces+plus&amp=%41~é"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def target_authorize_url(server: ReferenceServer, payer: Target, *, scope: str | None = None, **extra: str) -> str:
    """A conformant authorization request of the target's client (PKCE S256, a fresh state), for the browser tests."""
    _, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": payer.client.client_id, "redirect_uri": payer.client.redirect_uri,
              "scope": scope or payer.scopes["limited"], "state": secrets.token_urlsafe(12),
              "aud": payer.fhir_base_url, "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    return f"{server.issuer}/authorize?{urlencode(params)}"


def hidden_inputs(html: str) -> dict[str, str]:
    out = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and 'type="hidden"' in tag:
            out[unescape(name.group(1))] = unescape(value.group(1)) if value else ""
    return out


def scope_boxes(html: str) -> list[str]:
    return [unescape(v) for v in re.findall(r'<input type="checkbox" name="scope" id="[^"]*" value="([^"]*)"', html)]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


@dataclass
class Launch:
    """Everything one launch produced."""

    state: str
    verifier: str
    challenge: str
    redirect: str = ""
    params: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, Any] = field(default_factory=dict)
    token_response: httpx.Response | None = None


class Launcher:
    def __init__(self, srv: ReferenceServer) -> None:
        self.srv = srv
        env = srv.target_env()
        self.client_id = env["SMART_REFERENCE_CLIENT_ID"]
        self.secret = env["SMART_REFERENCE_CLIENT_SECRET"]
        self.other_id = env["SMART_REFERENCE_OTHER_CLIENT_ID"]
        self.other_secret = env["SMART_REFERENCE_OTHER_CLIENT_SECRET"]
        self.passwords = {"alice": env["SMART_REFERENCE_MEMBER_PASSWORD"],
                          "bob": env["SMART_REFERENCE_OTHER_MEMBER_PASSWORD"],
                          "carol": env["SMART_REFERENCE_REP_PASSWORD"]}

    def browser(self) -> httpx.Client:
        return httpx.Client(verify=self.srv.ssl_context(), follow_redirects=False, timeout=20)

    def api(self) -> httpx.Client:
        return httpx.Client(verify=self.srv.ssl_context(), timeout=20)

    def authorize_params(self, *, scope: str = FULL_SCOPE, state: str | None = None, challenge: str | None = None,
                         client_id: str | None = None, redirect_uri: str = CALLBACK, **extra: str | None
                         ) -> dict[str, str]:
        params: dict[str, str | None] = {
            "response_type": "code", "client_id": client_id or self.client_id, "redirect_uri": redirect_uri,
            "scope": scope, "state": state, "aud": self.srv.fhir_base_url, "code_challenge": challenge,
            "code_challenge_method": "S256", **extra}
        return {k: v for k, v in params.items() if v is not None}

    def start(self, browser: httpx.Client, params: dict[str, str], *, post: bool = False) -> httpx.Response:
        url = self.srv.issuer + "/authorize"
        return browser.post(url, data=params) if post else browser.get(url, params=params)

    def login(self, browser: httpx.Client, login_url: str, member: str = "alice",
              password: str | None = None) -> httpx.Response:
        page = browser.get(self.srv.origin + login_url)
        assert page.status_code == 200, page.text
        form = hidden_inputs(page.text)
        form.update(username=member, password=password if password is not None else self.passwords[member])
        return browser.post(self.srv.origin + "/auth/login", data=form)

    def consent(self, browser: httpx.Client, consent_url: str, *, decision: str = "allow",
                untick: tuple[str, ...] = ()) -> httpx.Response:
        page = browser.get(self.srv.origin + consent_url)
        assert page.status_code == 200, page.text
        form: dict[str, Any] = hidden_inputs(page.text)
        form["scope"] = [s for s in scope_boxes(page.text) if s not in untick]
        form["decision"] = decision
        return browser.post(self.srv.origin + "/auth/consent", data=form)

    def launch(self, *, member: str = "alice", scope: str = FULL_SCOPE, untick: tuple[str, ...] = (),
               decision: str = "allow", exchange: bool = True, client: str | None = None,
               redirect_uri: str = CALLBACK, **extra: str | None) -> Launch:
        """authorize → login → consent → redirect (→ token exchange)."""
        verifier, challenge = pkce_pair()
        run = Launch(state=secrets.token_urlsafe(16), verifier=verifier, challenge=challenge)
        with self.browser() as browser:
            first = self.start(browser, self.authorize_params(scope=scope, state=run.state, challenge=challenge,
                                                              client_id=client, redirect_uri=redirect_uri, **extra))
            assert first.status_code == 303, first.text
            after_login = self.login(browser, first.headers["location"], member)
            assert after_login.status_code == 303, after_login.text
            final = after_login
            if after_login.headers["location"].startswith("/auth/consent"):
                final = self.consent(browser, after_login.headers["location"], decision=decision, untick=untick)
            assert final.status_code in (302, 303), final.text
        run.redirect = final.headers["location"]
        run.params = query(run.redirect)
        if exchange and "code" in run.params:
            run.token_response = self.exchange(run.params["code"], verifier, client=client,
                                               redirect_uri=redirect_uri)
            run.tokens = run.token_response.json()
        return run

    def basic(self, client: str | None = None) -> tuple[str, str]:
        if client is None or client == self.client_id:
            return (self.client_id, self.secret)
        return (self.other_id, self.other_secret)

    def token_post(self, data: dict[str, str], auth: tuple[str, str] | None = None, *,
                   no_auth: bool = False) -> httpx.Response:
        with self.api() as api:
            return api.post(self.srv.issuer + "/token", data=data, auth=None if no_auth else (auth or self.basic()))

    def exchange(self, code: str, verifier: str | None, *, client: str | None = None,
                 redirect_uri: str = CALLBACK, auth: tuple[str, str] | None = None) -> httpx.Response:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if verifier is not None:
            data["code_verifier"] = verifier
        return self.token_post(data, auth or self.basic(client))

    def fhir(self, path: str, token: str | None, method: str = "GET", **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        with self.api() as api:
            return api.request(method, self.srv.fhir_base_url + path, headers=headers, **kwargs)
