"""The browser driver against a fake identity provider whose pages look nothing like the reference server's.

Two-page sign-in (identifier, then password), an optional "stay signed in?" page, a consent page with its own markup,
then a 302 to a redirect_uri on a port where nothing listens. Served over HTTPS from a private (trustme) CA.
"""

from __future__ import annotations

import html
import secrets
import socket
import ssl
import sys
import threading
import time
import types
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from smart_conformance import browser
from smart_conformance.browser import (
    DEFAULT_STEP_TIMEOUT_MS,
    BrowserSession,
    BrowserUnavailable,
    LoginStepError,
    OriginNotVerified,
    RecipeError,
    chromium,
    compose_steps,
    find_chromium,
    parse_recipe,
    pinning,
    take_screenshot,
    verified_spki_sha256,
)
from smart_conformance.smart.launch import LaunchSpec, run_launch
from smart_conformance.smart.pkce import s256_challenge
from smart_conformance.smart.token import ClientCredentials, basic_auth_header

CLIENT_ID = "acme app"  # a space: Basic auth must form-urlencode it
CLIENT_SECRET = "s3cr3t:/+"
USER = "alice@example.org"
PASSWORD = "Tr0ub4dor&3-horse"
SCOPES = ["launch/patient", "openid", "fhirUser", "patient/Patient.rs", "patient/Coverage.rs"]

RECIPE: dict[str, Any] = {
    "step_timeout_ms": 5000,
    "steps": [
        {"fill": {"selector": "input[name=loginfmt]", "value": "${member.username}"}},
        {"click": "#idSIButton9"},
        {"wait_for": {"text": "Enter password"}},
        {"fill": {"selector": "#i0118", "value": "${member.password}"}},
        {"click": "form.pw button.primary"},
        {"click": "#kmsi-no", "optional": True, "timeout_ms": 1000},
    ],
    "consent": {
        "approve": [{"expect_text": "wants to access your records"}, {"click": "#yes"}],
        "deny": [{"click": "text=Cancel"}],
        "untick": [{"uncheck": "li.perm input[data-scope='${scope}']"}],
    },
}
VALUES = {"member.username": USER, "member.password": PASSWORD}


# ----------------------------------------------------------------------------------------------------------------
# The fake identity provider


@dataclass
class FakeIdp:
    origin: str = ""
    login_origin: str = ""  # a second origin (a separate sign-in host) serving the same pages
    ca_path: Path = Path()
    transactions: dict[str, dict[str, str]] = field(default_factory=dict)
    codes: dict[str, list[str]] = field(default_factory=dict)
    methods: list[str] = field(default_factory=list)
    issued: dict[str, dict[str, str]] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)  # single sign-on: session cookie -> user

    @property
    def authorize_url(self) -> str:
        return self.origin + "/oauth2/v2.0/authorize"


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html><head><title>{html.escape(title)}</title>"
                        "<style>body{font:16px sans-serif;margin:40px} .card{border:1px solid #ccc;padding:20px;"
                        "width:420px} input{display:block;margin:8px 0;width:300px}</style></head>"
                        f"<body><div class=card>{body}</div></body></html>")


def build_idp(idp: FakeIdp) -> Starlette:
    async def authorize(request: Request) -> Response:
        params = dict(request.query_params) if request.method == "GET" else dict(await request.form())
        idp.methods.append(request.method)
        if params.get("client_id") != CLIENT_ID:
            return _page("Error", "<h1>We couldn't sign you in</h1><p>Application not found in the directory.</p>")
        tx = secrets.token_urlsafe(8)
        idp.transactions[tx] = {k: str(v) for k, v in params.items()}
        user = idp.sessions.get(request.cookies.get("acme_sso", ""))
        if user and params.get("sso") != "ignore":  # signed in earlier in this browser: straight to the permissions
            idp.transactions[tx]["user"] = user
            return RedirectResponse(f"/grant?tx={tx}", status_code=302)
        host = idp.login_origin if params.get("login_host") == "separate" else ""
        return RedirectResponse(f"{host}/signin/identifier?tx={tx}", status_code=302)

    async def identifier(request: Request) -> Response:
        if request.method == "POST":
            form = await request.form()
            tx = str(form["tx"])
            idp.transactions[tx]["user"] = str(form.get("loginfmt", ""))
            return RedirectResponse(f"/signin/password?tx={tx}", status_code=303)
        tx = request.query_params["tx"]
        return _page("Sign in to Acme Health",
                     f"<h2>Sign in</h2><form method=post action=/signin/identifier><input type=hidden name=tx "
                     f"value={tx}><label>Email<input type=email name=loginfmt id=i0116></label>"
                     "<input type=submit id=idSIButton9 value=Next></form>")

    async def password(request: Request) -> Response:
        error = ""
        if request.method == "POST":
            form = await request.form()
            tx = str(form["tx"])
            txn = idp.transactions[tx]
            if txn.get("user") == USER and form.get("passwd") == PASSWORD:
                nxt = "/signin/kmsi" if txn.get("kmsi") == "1" else "/grant"
                signed_in = RedirectResponse(f"{nxt}?tx={tx}", status_code=303)
                session = secrets.token_urlsafe(12)
                idp.sessions[session] = USER
                signed_in.set_cookie("acme_sso", session, secure=True, httponly=True, samesite="lax")
                return signed_in
            error = "<p class=err>Your password is incorrect.</p>"
        else:
            tx = request.query_params["tx"]
        return _page("Enter password",
                     f"<p>{html.escape(idp.transactions[tx].get('user', ''))}</p><h2>Enter password</h2>{error}"
                     f"<form class=pw method=post action=/signin/password><input type=hidden name=tx value={tx}>"
                     "<input type=password name=passwd id=i0118><button class='btn primary' type=submit>"
                     "Sign in</button></form>")

    async def kmsi(request: Request) -> Response:
        tx = request.query_params["tx"]
        return _page("Stay signed in?", f"<h2>Stay signed in?</h2><a id=kmsi-no href='/grant?tx={tx}'>No</a>")

    async def grant(request: Request) -> Response:
        if request.method == "POST":
            form = await request.form()
            txn = idp.transactions[str(form["tx"])]
            back = {"state": txn.get("state", "")}
            if form.get("choice") != "yes":
                back = {"error": "access_denied", **back}
            else:
                code = secrets.token_urlsafe(16)
                requested = txn.get("scope", "").split()
                idp.codes[code] = [requested[int(i)] for i in form.getlist("perm")]
                idp.issued[code] = txn
                back = {"code": code, **back}
            if txn.get("response_mode") == "form_post":
                fields = "".join(f"<input type=hidden name={k} value='{html.escape(v, quote=True)}'>"
                                 for k, v in back.items())
                return _page("Submit", f"<form method=post action='{txn['redirect_uri']}'>{fields}</form>"
                             "<script>document.forms[0].submit()</script>")
            return RedirectResponse(txn["redirect_uri"] + "?" + urlencode(back), status_code=302)
        tx = request.query_params["tx"]
        items = "".join(f"<li class=perm><label><input type=checkbox name=perm value={i} "
                        f"data-scope='{html.escape(s, quote=True)}' checked> {html.escape(s)}</label></li>"
                        for i, s in enumerate(idp.transactions[tx].get("scope", "").split()))
        return _page("Permissions", f"<h2>Acme App wants to access your records</h2><form method=post "
                     f"action=/grant><input type=hidden name=tx value={tx}><ul>{items}</ul>"
                     "<button id=yes name=choice value=yes>Accept</button> "
                     "<button name=choice value=no>Cancel</button></form>")

    async def token_endpoint(request: Request) -> Response:
        """Just enough of a token endpoint to prove run_launch: Basic client auth, one-time code, PKCE S256."""
        form = await request.form()
        expected_auth = basic_auth_header(CLIENT_ID, CLIENT_SECRET)
        if request.headers.get("authorization") != expected_auth:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        txn = idp.issued.pop(str(form.get("code")), None)
        if txn is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if s256_challenge(str(form.get("code_verifier", ""))) != txn.get("code_challenge"):
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
        return JSONResponse({"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300,
                             "scope": txn.get("scope", ""), "patient": "pat-1"},
                            headers={"Cache-Control": "no-store"})

    return Starlette(routes=[
        Route("/oauth2/v2.0/token", token_endpoint, methods=["POST"]),
        Route("/oauth2/v2.0/authorize", authorize, methods=["GET", "POST"]),
        Route("/signin/identifier", identifier, methods=["GET", "POST"]),
        Route("/signin/password", password, methods=["GET", "POST"]),
        Route("/signin/kmsi", kmsi),
        Route("/grant", grant, methods=["GET", "POST"]),
    ])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_listening(port: int, thread: threading.Thread, timeout: float = 10.0) -> None:
    """Poll the port: the server is ready when it accepts a connection."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("fake IdP thread died during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pause.wait(0.02)
    raise RuntimeError(f"fake IdP did not listen on {port} within {timeout}s")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def idp(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeIdp]:
    d = tmp_path_factory.mktemp("idp-tls")
    ca_path = d / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    pems = []
    for i, names in enumerate((("127.0.0.1",), ("localhost",))):  # two leaves, two keys: two pins
        leaf = ca.issue_cert(*names)
        cert, key = d / f"cert{i}.pem", d / f"key{i}.pem"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        pems.append((cert, key))
    port, login_port = free_port(), free_port()
    fake = FakeIdp(origin=f"https://127.0.0.1:{port}", login_origin=f"https://localhost:{login_port}",
                   ca_path=ca_path)
    app = build_idp(fake)
    servers = []
    for p, (cert, key) in zip((port, login_port), pems, strict=True):
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=p, log_level="warning",
                                               ssl_certfile=str(cert), ssl_keyfile=str(key), lifespan="off"))
        thread = threading.Thread(target=server.run, name=f"fake-idp-{p}", daemon=True)
        thread.start()
        wait_until_listening(p, thread)
        servers.append((server, thread))
    yield fake
    for server, thread in servers:
        server.should_exit = True
    for server, thread in servers:
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def session(idp: FakeIdp) -> Iterator[BrowserSession]:
    """One browser for the module; every authorize() gets a fresh context."""
    with BrowserSession(ca_bundle=idp.ca_path, step_timeout_ms=5000) as s:
        yield s


@pytest.fixture()
def redirect_uri() -> str:
    """A callback on a port where nothing listens: the browser must capture the redirect by itself."""
    return f"http://127.0.0.1:{free_port()}/cb"


def auth_url(idp: FakeIdp, redirect_uri: str, **extra: str) -> tuple[str, str]:
    state = secrets.token_urlsafe(16)
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": redirect_uri,
              "scope": " ".join(SCOPES), "state": state, **extra}
    return idp.authorize_url + "?" + urlencode(params), state


def mask_code(url: str) -> str:
    import re

    return re.sub(r"code=[^&]+", "code=***", url)


def nothing_listens(redirect_uri: str) -> bool:
    port = int(redirect_uri.split(":")[2].split("/")[0])
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


# ----------------------------------------------------------------------------------------------------------------
# Launches


def test_recipe_signs_in_and_redirect_is_captured(session: BrowserSession, idp: FakeIdp, redirect_uri: str,
                                                  tmp_path: Path) -> None:
    url, state = auth_url(idp, redirect_uri)
    steps = compose_steps(parse_recipe(RECIPE), "approve")
    result = session.authorize(url, redirect_uri=redirect_uri, steps=steps, values=VALUES, artifacts_dir=tmp_path,
                               redact_url=mask_code)
    assert result.redirected and not result.failed
    assert result.state == state
    assert result.code and idp.codes[result.code] == SCOPES
    assert result.redirect_url is not None and "code=***" in result.redirect_url
    assert result.code not in repr(result)
    assert result.tls_mode == "spki-pin"
    assert nothing_listens(redirect_uri)
    assert any(s.startswith("click '#kmsi-no' (optional, not present: ") for s in result.steps_skipped)
    titles = [s.title for s in result.screenshots]
    assert titles[:3] == ["Sign in to Acme Health", "Enter password", "Permissions"]
    assert all(s.path.is_file() and s.path.stat().st_size > 1000 for s in result.screenshots)
    assert result.trace_path is None  # kept only on failure


def test_optional_step_runs_when_its_page_shows(session: BrowserSession, idp: FakeIdp, redirect_uri: str,
                                               tmp_path: Path) -> None:
    url, _ = auth_url(idp, redirect_uri, kmsi="1")
    result = session.authorize(url, redirect_uri=redirect_uri, steps=compose_steps(parse_recipe(RECIPE)),
                               values=VALUES, artifacts_dir=tmp_path)
    assert result.code
    assert "click '#kmsi-no'" in result.steps_run
    assert "Stay signed in?" in [s.title for s in result.screenshots]


def test_form_post_response_is_captured_from_the_body(session: BrowserSession, idp: FakeIdp, redirect_uri: str,
                                                      tmp_path: Path) -> None:
    url, state = auth_url(idp, redirect_uri, response_mode="form_post")
    steps = compose_steps(parse_recipe({**RECIPE, "steps": RECIPE["steps"][:5]}))
    result = session.authorize(url, redirect_uri=redirect_uri, steps=steps, values=VALUES, artifacts_dir=tmp_path)
    assert result.redirected and result.state == state and result.code in idp.codes
    assert nothing_listens(redirect_uri)


def test_untick_scenario_withholds_those_scopes(session: BrowserSession, idp: FakeIdp, redirect_uri: str,
                                               tmp_path: Path) -> None:
    url, _ = auth_url(idp, redirect_uri)
    withheld = ["patient/Coverage.rs", "openid"]
    steps = compose_steps(parse_recipe(RECIPE), ("untick", withheld))
    result = session.authorize(url, redirect_uri=redirect_uri, steps=steps, values=VALUES, artifacts_dir=tmp_path)
    assert result.code
    assert idp.codes[result.code] == [s for s in SCOPES if s not in withheld]


def test_deny_scenario_redirects_with_access_denied(session: BrowserSession, idp: FakeIdp, redirect_uri: str,
                                                    tmp_path: Path) -> None:
    url, state = auth_url(idp, redirect_uri)
    result = session.authorize(url, redirect_uri=redirect_uri, steps=compose_steps(parse_recipe(RECIPE), "deny"),
                               values=VALUES, artifacts_dir=tmp_path)
    assert result.redirected
    assert (result.error, result.state, result.code) == ("access_denied", state, None)


def test_wrong_selector_fails_fast_with_context_and_scrubbed_trace(session: BrowserSession, idp: FakeIdp,
                                                                  redirect_uri: str, tmp_path: Path) -> None:
    recipe = parse_recipe({"steps": [
        {"fill": {"selector": "#i0116", "value": "${member.username}"}},
        {"click": "#idSIButton9"},
        {"fill": {"selector": "#i0118", "value": "${member.password}"}},
        {"click": "#no-such-button"},
    ]})
    url, _ = auth_url(idp, redirect_uri)
    started = time.monotonic()
    with pytest.raises(LoginStepError) as caught:
        session.authorize(url, redirect_uri=redirect_uri, steps=compose_steps(recipe), values=VALUES,
                          artifacts_dir=tmp_path, step_timeout_ms=1000)
    elapsed = time.monotonic() - started
    err = caught.value
    assert elapsed < DEFAULT_STEP_TIMEOUT_MS / 1000, elapsed  # the step's own 1 s, not the 10 s default
    assert err.index == 4 and err.where == "login.steps[3]"
    assert "/signin/password" in err.url and err.title == "Enter password"
    assert "selector not found within 1s" in str(err)
    assert str(err).startswith("login step 4 (login.steps[3]: click: '#no-such-button') could not proceed on https://")
    assert err.screenshot is not None and err.screenshot.is_file() and str(err.screenshot) in str(err)
    assert PASSWORD not in str(err)
    # the trace is kept on failure, with the password scrubbed from actions, DOM snapshots and request bodies
    assert err.trace is not None and err.trace.is_file() and str(err).endswith(f"; trace: {err.trace}")
    with zipfile.ZipFile(err.trace) as z:
        blob = b"".join(z.read(n) for n in z.namelist())
    assert b"#i0118" in blob  # the fill is in the trace...
    assert PASSWORD.encode() not in blob and b"Tr0ub4dor%263" not in blob  # ...its value is not


def test_failing_step_shows_the_step_as_written_without_the_secret(session: BrowserSession, idp: FakeIdp,
                                                                   redirect_uri: str, tmp_path: Path) -> None:
    recipe = parse_recipe({"steps": [{"fill": {"selector": "#passwd", "value": "${member.password}"},
                                      "timeout_ms": 500}]})
    url, _ = auth_url(idp, redirect_uri)
    with pytest.raises(LoginStepError) as caught:
        session.authorize(url, redirect_uri=redirect_uri, steps=compose_steps(recipe), values=VALUES,
                          artifacts_dir=tmp_path)
    message = str(caught.value)
    assert "fill: {selector: '#passwd', value: '${member.password}'}" in message
    assert '"Sign in to Acme Health": selector not found within 0.5s' in message
    assert PASSWORD not in message


def test_error_page_without_redirect(session: BrowserSession, idp: FakeIdp, redirect_uri: str,
                                     tmp_path: Path) -> None:
    url = idp.authorize_url + "?" + urlencode({"response_type": "code", "client_id": "no-such-app",
                                               "redirect_uri": redirect_uri, "state": "s1"})
    result = session.authorize(url, redirect_uri=redirect_uri, artifacts_dir=tmp_path, expect_redirect=False,
                               settle_ms=200)
    assert not result.redirected and not result.failed
    assert result.title == "Error"
    assert "Application not found" in result.text_snippet
    assert result.page_url.startswith(idp.authorize_url)
    assert len(result.screenshots) == 1 and result.screenshots[0].path.is_file()
    # the same page where a redirect was expected: returned (the checks judge it), marked failed, trace kept
    expected = session.authorize(url, redirect_uri=redirect_uri, artifacts_dir=tmp_path / "2", step_timeout_ms=500)
    assert expected.failed and not expected.redirected
    assert expected.trace_path is not None and expected.trace_path.is_file()


def test_authorize_by_post_with_a_hook_step(session: BrowserSession, idp: FakeIdp, redirect_uri: str,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def type_password(page: Any, values: dict[str, str]) -> None:
        seen["url"] = page.url
        page.fill("#i0118", values["member.password"])

    hooks = types.ModuleType("fake_idp_hooks")
    hooks.type_password = type_password  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_idp_hooks", hooks)
    recipe = dict(RECIPE, steps=[RECIPE["steps"][0], RECIPE["steps"][1], {"wait_for": {"url": "**/signin/password*"}},
                                 {"hook": "fake_idp_hooks:type_password"}, {"press": {"selector": "#i0118",
                                                                                       "key": "Enter"}}])
    state = "a b&c=d/é+%"
    form = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": redirect_uri,
            "scope": "launch/patient openid", "state": state}
    before = len(idp.methods)
    result = session.authorize(idp.authorize_url, method="POST", form=form, redirect_uri=redirect_uri,
                               steps=compose_steps(parse_recipe(recipe)), values=VALUES, artifacts_dir=tmp_path)
    assert idp.methods[before:] == ["POST"]
    assert "/signin/password" in seen["url"]
    assert result.code and result.state == state
    assert idp.codes[result.code] == ["launch/patient", "openid"]


def test_unknown_placeholder_is_a_recipe_error_before_browsing(session: BrowserSession, redirect_uri: str,
                                                               tmp_path: Path) -> None:
    recipe = parse_recipe({"steps": [{"fill": {"selector": "#u", "value": "${member.usrname}"}}]})
    with pytest.raises(RecipeError) as caught:
        session.authorize("https://127.0.0.1:9/never", redirect_uri=redirect_uri, steps=compose_steps(recipe),
                          values=VALUES, artifacts_dir=tmp_path)
    assert "login.steps[0]" in str(caught.value) and "${member.usrname}" in str(caught.value)
    assert "did you mean '${member.username}'" in str(caught.value)
    assert not list(tmp_path.iterdir())


def launch_spec(idp: FakeIdp, redirect_uri: str, **changes: Any) -> LaunchSpec:
    base = LaunchSpec(authorization_endpoint=idp.authorize_url, token_endpoint=idp.origin + "/oauth2/v2.0/token",
                      fhir_base_url="https://fhir.example/r4", client=ClientCredentials(CLIENT_ID, CLIENT_SECRET),
                      redirect_uri=redirect_uri, scope="launch/patient openid patient/Patient.rs",
                      steps=compose_steps(parse_recipe({**RECIPE, "steps": RECIPE["steps"][:5]})), values=VALUES)
    return replace(base, **changes)


def test_run_launch_end_to_end(session: BrowserSession, idp: FakeIdp, redirect_uri: str, tmp_path: Path) -> None:
    with httpx.Client(verify=ssl.create_default_context(cafile=str(idp.ca_path))) as http:
        result = run_launch(launch_spec(idp, redirect_uri), http, session, tmp_path)
        assert result.problems == [] and result.state_matches
        assert result.token_response is not None and result.token_response.status_code == 200
        assert result.token is not None and result.token.patient == "pat-1"
        assert result.token.scopes == ("launch/patient", "openid", "patient/Patient.rs")
        assert result.code_verifier and result.nonce and result.screenshots
        assert result.browser_seconds > 0 and result.token_seconds is not None
        print(f"\none authorization: browser {result.browser_seconds:.2f}s, token {result.token_seconds:.3f}s")

        by_post = run_launch(launch_spec(idp, redirect_uri, use_post=True), http, session, tmp_path / "post")
        assert by_post.token is not None and idp.methods[-1] == "POST"

        wrong_verifier = run_launch(launch_spec(idp, redirect_uri, token_overrides={"code_verifier": "x" * 43}),
                                    http, session, tmp_path / "v")
        assert wrong_verifier.token is None and wrong_verifier.problems == ["token request answered HTTP 400"]

        denied = run_launch(launch_spec(idp, redirect_uri, steps=compose_steps(parse_recipe(RECIPE), "deny")),
                            http, session, tmp_path / "deny")
        assert denied.token_response is None and denied.state_matches
        assert denied.problems == ["authorization error redirect: error='access_denied'"]


def test_single_sign_on_skips_the_sign_in_steps_without_waiting(session: BrowserSession, idp: FakeIdp,
                                                                  redirect_uri: str, tmp_path: Path) -> None:
    """A launch that reuses the member's identity-provider session goes straight to consent: the sign-in steps are
    skipped as soon as the consent page shows (not after a step timeout), and no password is typed."""
    recipe = parse_recipe(RECIPE)
    steps, count = compose_steps(recipe), len(recipe.steps)
    url, _ = auth_url(idp, redirect_uri)
    first = session.authorize(url, redirect_uri=redirect_uri, steps=steps, values=VALUES, artifacts_dir=tmp_path,
                              session_key="alice", sign_in_steps=count)
    assert first.code and first.password_submitted and not first.session_reused  # the last step is optional
    assert session.has_session("alice") and not session.has_session("bob")

    url, _ = auth_url(idp, redirect_uri)
    again = session.authorize(url, redirect_uri=redirect_uri, steps=steps, values=VALUES, artifacts_dir=tmp_path,
                              session_key="alice", reuse_session=True, sign_in_steps=count, name="sso")
    assert again.code and again.session_reused and not again.password_submitted
    assert sum("signed in already" in s for s in again.steps_skipped) == count
    assert again.seconds < recipe.step_timeout_ms / 1000  # decided by what showed, not by a timeout

    # A server that shows the sign-in page anyway: the steps run (a password typed) ...
    url, _ = auth_url(idp, redirect_uri, sso="ignore")
    shown = session.authorize(url, redirect_uri=redirect_uri, steps=steps, values=VALUES, artifacts_dir=tmp_path,
                              session_key="alice", reuse_session=True, sign_in_steps=count, name="shown")
    assert shown.code and shown.password_submitted and not shown.session_reused
    # ... unless the sign-in budget is spent: then the step fails naming why, and no password is typed.
    url, _ = auth_url(idp, redirect_uri, sso="ignore")
    with pytest.raises(LoginStepError, match="login.max_sign_ins is 1"):
        session.authorize(url, redirect_uri=redirect_uri, steps=steps, values=VALUES, artifacts_dir=tmp_path,
                          session_key="alice", reuse_session=True, sign_in_steps=count, name="spent",
                          sign_in_refusal="the sign-in budget is spent: login.max_sign_ins is 1")


# ----------------------------------------------------------------------------------------------------------------
# Screenshots mask passwords (a real pixel check, not a check that an option was passed)


def test_password_inputs_are_masked_in_screenshots(session: BrowserSession, tmp_path: Path) -> None:
    context = session.browser.new_context(viewport={"width": 500, "height": 200})
    try:
        page = context.new_page()

        def shot(password: str, masked: bool) -> bytes:
            page.set_content(f"<title>pw</title><input id=u value=alice><input type=password id=p "
                             f"value='{password}' style='font-size:30px;width:400px'>")
            name = f"{'m' if masked else 'u'}-{len(password)}"
            return take_screenshot(page, tmp_path, name, mask_passwords=masked).path.read_bytes()

        assert shot("a", masked=False) != shot("WWWWWWWWWWWWWW", masked=False)  # the field's content shows
        assert shot("a", masked=True) == shot("WWWWWWWWWWWWWW", masked=True)  # masked: nothing of it shows
    finally:
        context.close()


# ----------------------------------------------------------------------------------------------------------------
# TLS in the browser


def test_private_ca_is_not_trusted_without_the_bundle(idp: FakeIdp, redirect_uri: str, tmp_path: Path) -> None:
    url, _ = auth_url(idp, redirect_uri)
    with BrowserSession() as plain, pytest.raises(LoginStepError) as caught:
        plain.authorize(url, redirect_uri=redirect_uri, artifacts_dir=tmp_path, step_timeout_ms=3000)
    assert "ERR_CERT_AUTHORITY_INVALID" in str(caught.value)


def test_origin_verification_refuses_another_ca(idp: FakeIdp, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    port = int(idp.origin.rsplit(":", 1)[1])
    with pytest.raises(OriginNotVerified):
        verified_spki_sha256("127.0.0.1", port, other)
    assert len(verified_spki_sha256("127.0.0.1", port, idp.ca_path)) == 44


SHORT = {**RECIPE, "steps": RECIPE["steps"][:5]}  # without the optional page: no wait for its timeout


def test_new_private_origins_are_verified_and_pinned_by_relaunching(idp: FakeIdp, redirect_uri: str,
                                                                    tmp_path: Path) -> None:
    with BrowserSession(ca_bundle=idp.ca_path) as fresh:
        assert fresh.launches == 1
        result = fresh.authorize(auth_url(idp, redirect_uri)[0], redirect_uri=redirect_uri,
                                 steps=compose_steps(parse_recipe(SHORT)), values=VALUES, artifacts_dir=tmp_path)
        assert result.code and result.tls_mode == "spki-pin" and fresh.launches == 2
        # the authorize origin redirects to a sign-in host on another origin of the same private PKI
        url, state = auth_url(idp, redirect_uri, login_host="separate")
        hop = fresh.authorize(url, redirect_uri=redirect_uri, steps=compose_steps(parse_recipe(SHORT)),
                              values=VALUES, artifacts_dir=tmp_path / "hop")
        assert hop.code and hop.state == state and fresh.launches == 3 and hop.tls_mode == "spki-pin"
        assert any(s.url.startswith(idp.login_origin) for s in hop.screenshots)
        again = fresh.authorize(url, redirect_uri=redirect_uri, steps=compose_steps(parse_recipe(SHORT)),
                                values=VALUES, artifacts_dir=tmp_path / "again")
        assert again.code and fresh.launches == 3


def test_origins_known_in_advance_are_pinned_at_start(idp: FakeIdp, redirect_uri: str, tmp_path: Path) -> None:
    """The FHIR base and authorization endpoint are known from discovery: pinned when Chromium starts, so the first
    authorization does not cost a second Chromium start."""
    url = auth_url(idp, redirect_uri)[0]
    with BrowserSession(ca_bundle=idp.ca_path, origins=[url]) as fresh:
        result = fresh.authorize(url, redirect_uri=redirect_uri, steps=compose_steps(parse_recipe(SHORT)),
                                 values=VALUES, artifacts_dir=tmp_path)
        assert result.code and result.tls_mode == "spki-pin" and fresh.launches == 1


def test_fallback_when_chromium_does_not_honour_the_pin(idp: FakeIdp, redirect_uri: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Python verified the origin, but the pinned hash does not match what Chromium sees: the one-context fallback
    (ignore_https_errors) is used and recorded. Simulated by pinning a wrong key hash."""
    monkeypatch.setattr(pinning, "verified_spki_sha256", lambda *a, **k: "A" * 43 + "=")
    with BrowserSession(ca_bundle=idp.ca_path) as fresh:
        result = fresh.authorize(auth_url(idp, redirect_uri)[0], redirect_uri=redirect_uri,
                                 steps=compose_steps(parse_recipe(SHORT)), values=VALUES, artifacts_dir=tmp_path)
    assert result.code and result.tls_mode == "ignore-https-errors-after-python-verify"


# ----------------------------------------------------------------------------------------------------------------
# Finding Chromium


def test_no_chromium_names_both_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chromium, "_managed_executable", lambda: None)
    monkeypatch.setattr(chromium, "SYSTEM_CHROMIUM_PATHS", ("/nonexistent/chromium",))
    with pytest.raises(BrowserUnavailable) as caught:
        find_chromium(env={})
    message = str(caught.value)
    assert "python -m playwright install chromium" in message
    assert "apt-get install -y chromium" in message and "SMART_CONFORMANCE_CHROMIUM" in message


def test_managed_chromium_is_preferred_and_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chromium, "_managed_executable", lambda: "/opt/ms-playwright/chrome")
    monkeypatch.setattr(chromium, "SYSTEM_CHROMIUM_PATHS", (sys.executable,))
    managed = find_chromium(env={})
    assert managed.kind == "managed" and managed.launch_args == ()
    chosen = find_chromium(env={"SMART_CONFORMANCE_CHROMIUM": sys.executable})
    assert chosen == browser.ChromiumChoice(sys.executable, "env")
    assert "--no-sandbox" in chosen.launch_args
    monkeypatch.setattr(chromium, "_managed_executable", lambda: None)
    assert find_chromium(env={}).kind == "system"
    with pytest.raises(BrowserUnavailable, match="SMART_CONFORMANCE_CHROMIUM=/nope"):
        find_chromium(env={"SMART_CONFORMANCE_CHROMIUM": "/nope"})


# ----------------------------------------------------------------------------------------------------------------
# Recipe parsing (no browser)


@pytest.mark.parametrize(("steps", "expected"), [
    ([{"fil": {"selector": "#a", "value": "x"}}],
     "login.steps[0]: fil: unknown step action. Fix: did you mean 'fill'?"),
    ([{"click": "#a"}, {"click": "#b", "fill": {"selector": "#a", "value": "x"}}],
     "login.steps[1]: (step): more than one action (click, fill)"),
    ([{"fill": {"selector": "#a"}}], "login.steps[0]: fill.value: missing"),
    ([{"fill": {"selector": "#a", "valu": "x"}}], "fill.valu: unknown key. Fix: did you mean 'value'?"),
    ([{"hook": "not a hook"}], "login.steps[0]: hook: 'not a hook' is not 'module:function'"),
    ([{"wait_for": {"url": "a", "text": "b"}}], "expected exactly one of selector, url, text"),
    ([{"click": "#a", "timeout_ms": "5s"}], "timeout_ms: expected milliseconds between 1 and 600000"),
    ([{"click": "#a", "optional": "yes"}], "optional: expected true or false"),
    ("click: '#a'", "login.steps: (list): expected a list of steps"),
])
def test_recipe_errors_name_step_key_and_fix(steps: Any, expected: str) -> None:
    with pytest.raises(RecipeError) as caught:
        parse_recipe({"steps": steps})
    assert expected in str(caught.value)
    assert "Fix:" in str(caught.value)


def test_compose_steps_scenarios() -> None:
    recipe = parse_recipe(RECIPE)
    assert len(compose_steps(recipe, "approve")) == len(RECIPE["steps"]) + 2
    untick = compose_steps(recipe, ("untick", ["a/b", "c"]))
    tail = untick[len(RECIPE["steps"]):]
    assert [s.action for s in tail] == ["uncheck", "uncheck", "expect_text", "click"]
    assert tail[1].resolve({}).target == "li.perm input[data-scope='c']"
    assert recipe.step_timeout_ms == 5000
    with pytest.raises(RecipeError, match="no 'revoke' scenario"):
        compose_steps(recipe, "revoke")
    assert compose_steps(parse_recipe({"steps": [{"click": "#go"}]}), "approve")[0].target == "#go"


def test_fallback_still_refuses_origins_python_did_not_verify(idp: FakeIdp, redirect_uri: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """In the ignore-https-errors fallback, a hop to an origin that does not verify is blocked inside Chromium."""
    def verify(host: str, port: int, ca_bundle: Any, timeout: float = 10.0) -> str:
        if host == "127.0.0.1":
            return "A" * 43 + "="  # "verified", but not the key Chromium sees: forces the fallback
        raise OriginNotVerified(f"https://{host}:{port} is not signed by {ca_bundle}")

    monkeypatch.setattr(pinning, "verified_spki_sha256", verify)
    url, _ = auth_url(idp, redirect_uri, login_host="separate")
    with BrowserSession(ca_bundle=idp.ca_path) as fresh, pytest.raises(LoginStepError) as caught:
        fresh.authorize(url, redirect_uri=redirect_uri, steps=compose_steps(parse_recipe(SHORT)), values=VALUES,
                        artifacts_dir=tmp_path, step_timeout_ms=1000)
    assert f"blocked {idp.login_origin}: it does not verify against the CA bundle" in str(caught.value)
