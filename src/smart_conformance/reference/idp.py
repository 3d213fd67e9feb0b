"""What hosted identity providers add around the password (the variants of issue 20): a TOTP page after it
(``totp-mfa``), "remember this device" and "stay signed in" prompts (``sign-in-prompts``), an account that locks after
repeated wrong passwords (``lockout-after-failures``) and a burst limit on the sign-in page (``sign-in-rate-limit``);
and the identity provider on an origin of its own (``separate-idp-origin``): :func:`idp_login` is its sign-in page,
which hands the member back to the authorization server with a one-time login verifier (:func:`take_login`).

``auth.login`` calls :func:`after_password` once the password is right; everything here ends, as the plain sign-in
does, in ``store.set_pending_user`` and a redirect to the consent page.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as token_source
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pyotp
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from smart_conformance.reference.context import Context, ctx_of
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.pages import error_page, esc, page
from smart_conformance.reference.variants import (
    LOCKOUT_AFTER_FAILURES,
    NO_SIGN_IN_SESSION,
    SIGN_IN_PROMPTS,
    SIGN_IN_RATE_LIMIT,
    TOTP_MFA,
)

LOCKOUT_THRESHOLD = 3  # wrong passwords in a row; the harness's one wrong-password check stays well below it
RATE_LIMIT_EVERY = 7  # every 7th sign-in page a browser asks for is answered 429
RETRY_AFTER_S = 1
# separate-idp-origin: the identity provider's own cookies, set on its origin (never the authorization server's)
IDP_BROWSER_COOKIE = "__Host-idp_browser"
IDP_SESSION_COOKIE = "__Host-idp_session"
LOGIN_VERIFIER_TTL = 60.0


@dataclass
class IdpState:
    """The identity provider's own memory, per server: TOTP enrolments, sign-ins waiting for their code, failures."""

    totp: dict[str, str] = field(default_factory=dict)  # username -> base32 secret (enrolled at server start)
    awaiting_code: dict[str, str] = field(default_factory=dict)  # pending id -> username (password right)
    failures: dict[str, int] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)
    sign_in_pages: int = 0
    # separate-idp-origin: per login challenge, the sign-in form's anti-forgery token and the digest of the browser
    # cookie it was shown to; per login verifier, (challenge, username, expiry) until the server redeems it
    forms: dict[str, tuple[str, str]] = field(default_factory=dict)
    verifiers: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def enrol_totp(state_dir: Path, usernames: list[str]) -> dict[str, str]:
    """Each member's authenticator secret (160 bits, base32), kept in ``totp-<username>.txt`` (0600) in the state
    folder, as a payer's QA team keeps it in a CI secret; the reference target reads it as ``{file: ...}``."""
    secrets: dict[str, str] = {}
    for username in usernames:
        path = state_dir / f"totp-{username}.txt"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(pyotp.random_base32(32) + "\n")
        secrets[username] = path.read_text(encoding="utf-8").strip()
    return secrets


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# --- before the password: the burst limit and the lock ------------------------------------------------------------
def rate_limited(ctx: Context, request: Request) -> Response | None:
    """sign-in-rate-limit: every RATE_LIMIT_EVERY-th sign-in page a browser (it carries the authorize cookie) asks for
    is answered 429 with Retry-After, as an identity provider's burst limit answers; None: serve the page."""
    if not ctx.variants.active(SIGN_IN_RATE_LIMIT) or not request.cookies:
        return None
    with ctx.idp.lock:
        ctx.idp.sign_in_pages += 1
        limited = ctx.idp.sign_in_pages % RATE_LIMIT_EVERY == 0
    if not limited:
        return None
    body = (f"<!DOCTYPE html><title>Too many requests</title><h1>Too many requests</h1>"
            f"<p>Please wait {RETRY_AFTER_S} second before signing in again.</p>")
    return _no_store(HTMLResponse(body, status_code=429, headers={"Retry-After": str(RETRY_AFTER_S)}))


def locked_page(ctx: Context, username: str) -> Response | None:
    """lockout-after-failures: a locked account is told so, whatever the password."""
    if ctx.variants.active(LOCKOUT_AFTER_FAILURES) and username in ctx.idp.locked:
        return page(ctx, "idp.html", 403, title="Account locked", main_id="locked", raw={
            "content": '<p class="error" role="alert">Your account is locked: too many failed sign-in attempts. '
                       "Contact member services to unlock it.</p>"})
    return None


def password_result(ctx: Context, username: str, ok: bool) -> Response | None:
    """Count wrong passwords (reset by a right one); the LOCKOUT_THRESHOLD-th in a row locks the account."""
    if not ctx.variants.active(LOCKOUT_AFTER_FAILURES):
        return None
    with ctx.idp.lock:
        if ok:
            ctx.idp.failures.pop(username, None)
            return None
        if ctx.store.member(username) is None:
            return None
        ctx.idp.failures[username] = ctx.idp.failures.get(username, 0) + 1
        if ctx.idp.failures[username] >= LOCKOUT_THRESHOLD:
            ctx.idp.locked.add(username)
    return locked_page(ctx, username)


# --- after the password -----------------------------------------------------------------------------------------
def after_password(ctx: Context, pending_id: str, username: str) -> Response | None:
    """totp-mfa: the code page comes next (the member is not signed in yet), unless the mfa-skipped fault lets the
    password alone through; sign-in-prompts: the prompts come next. None: nothing of these variants is on, the plain
    sign-in goes on to consent."""
    if ctx.variants.active(TOTP_MFA) and username in ctx.idp.totp and not ctx.faults.active(Fault.MFA_SKIPPED):
        ctx.idp.awaiting_code[pending_id] = username
        return _no_store(RedirectResponse(f"/auth/mfa?{urlencode({'req': pending_id})}", status_code=303))
    if ctx.variants.active(SIGN_IN_PROMPTS):
        ctx.store.set_pending_user(pending_id, username)
        return _no_store(RedirectResponse(f"/auth/prompt?{urlencode({'req': pending_id, 'ask': 'device'})}",
                                          status_code=303))
    return None


def _signed_in(ctx: Context, pending_id: str, username: str) -> Response:
    ctx.store.set_pending_user(pending_id, username)
    if ctx.variants.active(SIGN_IN_PROMPTS):
        return _no_store(RedirectResponse(f"/auth/prompt?{urlencode({'req': pending_id, 'ask': 'device'})}",
                                          status_code=303))
    return _no_store(RedirectResponse(f"/auth/consent?{urlencode({'req': pending_id})}", status_code=303))


def _csrf(pending: object) -> str:
    return f'<input type="hidden" name="csrf_token" value="{esc(pending["csrf"])}">'  # type: ignore[index]


def _mfa_page(ctx: Context, pending_id: str, pending: object, status: int = 200, error: str = "") -> Response:
    alert = f'<p class="error" role="alert" id="mfa-error">{esc(error)}</p>' if error else ""
    form = (f'{alert}<p>Enter the 6-digit code from your authenticator app.</p>'
            f'<form method="post" action="/auth/mfa"><input type="hidden" name="req" value="{esc(pending_id)}">'
            f'{_csrf(pending)}<p><label for="otp">Code</label> <input type="text" id="otp" name="otp" '
            'inputmode="numeric" autocomplete="one-time-code" required></p>'
            '<p><button type="submit">Verify</button></p></form>')
    return page(ctx, "idp.html", status, title="Two-step verification", main_id="mfa", raw={"content": form})


def _same_browser(ctx: Context, request: Request, pending: object) -> bool:
    from smart_conformance.reference.auth import _browser_cookie

    browser = request.cookies.get(_browser_cookie(ctx), "")
    return hashlib.sha256(browser.encode()).hexdigest() == pending["browser"]  # type: ignore[index]


async def mfa(request: Request) -> Response:
    """The one-time code page: RFC 6238 with one period of drift either way (RFC 6238 §5.2)."""
    ctx = ctx_of(request)
    if request.method == "GET":
        pending_id = request.query_params.get("req", "")
        pending = ctx.store.pending(pending_id)
        if pending is None or pending_id not in ctx.idp.awaiting_code:
            return error_page(ctx, "invalid_request", "This sign-in request is unknown or has expired.")
        return _mfa_page(ctx, pending_id, pending)
    form = await request.form()
    pending_id = str(form.get("req", ""))
    pending = ctx.store.pending(pending_id)
    username = ctx.idp.awaiting_code.get(pending_id)
    if pending is None or username is None:
        return error_page(ctx, "invalid_request", "This sign-in request is unknown or has expired.")
    if str(form.get("csrf_token", "")) != pending["csrf"] or not _same_browser(ctx, request, pending):
        return error_page(ctx, "invalid_request", "The form could not be verified (CSRF check failed).", 403)
    code = str(form.get("otp", "")).strip()
    if not pyotp.TOTP(ctx.idp.totp[username]).verify(code, valid_window=1):
        return _mfa_page(ctx, pending_id, pending, 401, "That code is not right. Enter the current code.")
    ctx.idp.awaiting_code.pop(pending_id, None)
    return _signed_in(ctx, pending_id, username)


_PROMPTS = {
    "device": ("Remember this device?", "remember_device",
               "Skip two-step verification on this device for 30 days?"),
    "stay": ("Stay signed in?", "stay_signed_in", "Stay signed in so you are asked to sign in less often?"),
}


async def prompt(request: Request) -> Response:
    """sign-in-prompts: "Remember this device?" then "Stay signed in?", each answered Yes or No; then consent."""
    ctx = ctx_of(request)
    source = request.query_params if request.method == "GET" else await request.form()
    pending_id, ask = str(source.get("req", "")), str(source.get("ask", ""))
    pending = ctx.store.pending(pending_id)
    if pending is None or not pending["username"] or ask not in _PROMPTS:
        return error_page(ctx, "invalid_request", "This sign-in request is unknown or has expired.")
    title, name, question = _PROMPTS[ask]
    if request.method == "GET":
        form = (f'<p>{esc(question)}</p><form method="post" action="/auth/prompt">'
                f'<input type="hidden" name="req" value="{esc(pending_id)}"><input type="hidden" name="ask" '
                f'value="{esc(ask)}">{_csrf(pending)}<p><button type="submit" name="{name}" value="yes">Yes</button> '
                f'<button type="submit" name="{name}" value="no">No</button></p></form>')
        return page(ctx, "idp.html", title=title, main_id=f"prompt-{ask}", raw={"content": form})
    if str(source.get("csrf_token", "")) != pending["csrf"] or not _same_browser(ctx, request, pending):
        return error_page(ctx, "invalid_request", "The form could not be verified (CSRF check failed).", 403)
    if ask == "device":
        target = f"/auth/prompt?{urlencode({'req': pending_id, 'ask': 'stay'})}"
    else:
        target = f"/auth/consent?{urlencode({'req': pending_id})}"
    return _no_store(RedirectResponse(target, status_code=303))


# --- the identity provider on its own origin (separate-idp-origin) --------------------------------------------------
def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _idp_form(ctx: Context, challenge: str, pending: object, csrf: str, status: int = 200, error: str = "",
              stage: str | None = None, username: str = "") -> Response:
    from smart_conformance.reference.auth import _login_page

    return _login_page(ctx, challenge, pending, status, error, stage=stage, username=username, action="/idp/login",
                       handle="login_challenge", csrf=csrf)


def _back_to_server(ctx: Context, challenge: str, username: str) -> Response:
    """The member is signed in here: back to the authorization server with a one-time verifier (as Ory Hydra's login
    app accepts a login challenge and sends the browser on)."""
    verifier = token_source.token_urlsafe(32)
    with ctx.idp.lock:
        now = time.monotonic()
        for stale in [v for v, (_, _, expires) in ctx.idp.verifiers.items() if expires < now]:
            del ctx.idp.verifiers[stale]
        ctx.idp.verifiers[verifier] = (challenge, username, now + LOGIN_VERIFIER_TTL)
        ctx.idp.forms.pop(challenge, None)
    target = ctx.auth_url(f"/auth/login/return?{urlencode({'login_verifier': verifier})}")
    return _no_store(RedirectResponse(target, status_code=303))


def take_login(ctx: Context, verifier: str) -> tuple[str, str] | None:
    """Redeem a login verifier once: (login challenge = the pending request, username), or None."""
    with ctx.idp.lock:
        found = ctx.idp.verifiers.pop(verifier, None)
    if found is None or found[2] < time.monotonic():
        return None
    return found[0], found[1]


def _idp_session_member(ctx: Context, request: Request) -> str | None:
    session = request.cookies.get(IDP_SESSION_COOKIE)
    if not session or ctx.variants.active(NO_SIGN_IN_SESSION):
        return None
    return ctx.store.session_user(session)


def _cookie(response: Response, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, secure=True, samesite="lax", path="/")


async def idp_login(request: Request) -> Response:
    """The identity provider's sign-in page on its own origin. GET: a member with this provider's session goes
    straight back (single sign-on); else the form, bound to this browser by a cookie of this origin and a token.
    POST: the password (two pages under two-page-sign-in, the lockout and burst limit as on the server's own page);
    when right, this provider's session cookie, and back to the authorization server."""
    from smart_conformance.reference.auth import _idp_cookie, verify_password

    ctx = ctx_of(request)
    source = request.query_params if request.method == "GET" else await request.form()
    challenge = str(source.get("login_challenge", ""))
    pending = ctx.store.pending(challenge) if challenge else None
    if pending is None:
        return error_page(ctx, "invalid_request", "This sign-in request is unknown or has expired.")
    if request.method == "GET":
        if (limited := rate_limited(ctx, request)) is not None:
            return limited
        member = _idp_session_member(ctx, request)
        if member is not None:
            return _back_to_server(ctx, challenge, member)
        browser = request.cookies.get(IDP_BROWSER_COOKIE) or token_source.token_urlsafe(32)
        csrf = token_source.token_urlsafe(32)
        with ctx.idp.lock:
            ctx.idp.forms[challenge] = (csrf, _digest(browser))
        response = _idp_cookie(ctx, _idp_form(ctx, challenge, pending, csrf), "XSRF-TOKEN")
        _cookie(response, IDP_BROWSER_COOKIE, browser)
        return response
    form_state = ctx.idp.forms.get(challenge)
    if not ctx.faults.active(Fault.LOGIN_NO_CSRF) and (
            form_state is None
            or not hmac.compare_digest(str(source.get("csrf_token", "")), form_state[0])
            or not hmac.compare_digest(_digest(request.cookies.get(IDP_BROWSER_COOKIE, "")), form_state[1])):
        return error_page(ctx, "invalid_request", "The form could not be verified (CSRF check failed).", 403)
    csrf = form_state[0] if form_state is not None else ""
    checked = verify_password(ctx, source,  # type: ignore[arg-type]
                              lambda **page_args: _idp_form(ctx, challenge, pending, csrf, **page_args))
    if not isinstance(checked, str):
        return checked
    response = _back_to_server(ctx, challenge, checked)
    if not ctx.variants.active(NO_SIGN_IN_SESSION):
        _cookie(response, IDP_SESSION_COOKIE, ctx.store.add_session(checked))
    return _idp_cookie(ctx, response, "idp_session")
