"""The authorization server: authorize, member sign-in and consent, token, introspection, revocation.

Error policy (RFC 6749 §4.1.2.1): problems found before the client and its redirect_uri are trusted (unknown
client_id, unregistered or altered redirect_uri) get an HTML error page and never a redirect; everything later is
redirected back with ``error``, ``error_description`` and the unchanged ``state``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import jwt
from starlette.datastructures import FormData, MultiDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from smart_conformance.reference import idp
from smart_conformance.reference import scopes as scope_rules
from smart_conformance.reference.client_auth import authenticate_client
from smart_conformance.reference.context import (
    CODE_TTL,
    Context,
    ctx_of,
)
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.pages import error_page, esc, page
from smart_conformance.reference.store import check_secret
from smart_conformance.reference.token_endpoint import _access_token, _challenge
from smart_conformance.reference.variants import (
    AUTHORIZE_REFUSAL_EMPTY_400,
    CONSENT_WITHOUT_SCOPE_CONTROLS,
    HOSTED_IDP_COOKIES,
    IMPLICIT_ERROR_IN_FRAGMENT,
    NO_SIGN_IN_SESSION,
    ONLY_REFRESH_TOKENS_REVOCABLE,
    OPAQUE_ACCESS_TOKENS,
    REMEMBERED_CONSENT,
    REVOKE_ALL_ON_REFRESH_REVOCATION,
    SCRIPT_RENDERED_SIGN_IN,
    SEPARATE_IDP_ORIGIN,
    TWO_PAGE_SIGN_IN,
)

BROWSER_COOKIE = "__Host-smartref_browser"
SESSION_COOKIE = "__Host-smartref_session"  # the identity provider's session: a later authorization skips sign-in
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


# --- helpers -------------------------------------------------------------------------------------------------
def _redirect(uri: str, params: dict[str, str], *, fragment: bool = False) -> RedirectResponse:
    """303 to the client's redirect_uri with params appended (query) or as the fragment (implicit grant)."""
    parts = urlsplit(uri)
    encoded = urlencode(params, quote_via=quote)
    if fragment:
        target = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, encoded))
    else:
        query = f"{parts.query}&{encoded}" if parts.query else encoded
        target = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    response = RedirectResponse(target, status_code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


def _error_redirect(ctx: Context, uri: str, error: str, description: str, state: str | None, *,
                    fragment: bool = False) -> RedirectResponse:
    if ctx.faults.active(Fault.AUTHORIZE_ERRORS_NONSTANDARD):
        error = "user_cancelled" if error == "access_denied" else "request_rejected"
    params = {"error": error, "error_description": description}
    if state is not None and not ctx.faults.active(Fault.STATE_NOT_ECHOED_ON_ERROR):
        params["state"] = state
    return _redirect(uri, params, fragment=fragment)


def _untrusted(ctx: Context, error: str, description: str) -> Response:
    """The client or its redirect_uri cannot be trusted: inform the member, never redirect (RFC 6749 §4.1.2.1).
    Under authorize-refusal-empty-400 the answer is a bare HTTP 400 with no body, as some servers send."""
    if ctx.variants.active(AUTHORIZE_REFUSAL_EMPTY_400):
        return Response(status_code=400, headers={"Cache-Control": "no-store"})
    return error_page(ctx, error, description)


def _success_redirect(ctx: Context, uri: str, code: str, state: str) -> RedirectResponse:
    if ctx.faults.active(Fault.STATE_ALTERED):
        state = quote(state, safe="")  # encoded here and again by _redirect: the app decodes only once
    iss = ctx.fhir_base if ctx.faults.active(Fault.AUTHORIZATION_RESPONSE_ISS_WRONG) else ctx.issuer
    return _redirect(uri, {"code": code, "state": state, "iss": iss})


async def _params(request: Request) -> MultiDict | FormData:
    if request.method == "POST":
        return await request.form()
    return request.query_params  # type: ignore[return-value]


def _redirect_uri_registered(ctx: Context, registered: list[str], uri: str) -> bool:
    if ctx.faults.active(Fault.REDIRECT_URI_PREFIX_MATCH):
        return any(uri.startswith(r) for r in registered)
    return uri in registered  # exact string comparison (RFC 9700 §4.1.3)


def _same_base(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


# --- authorize -----------------------------------------------------------------------------------------------
async def authorize(request: Request) -> Response:
    ctx = ctx_of(request)
    response = await _authorize(ctx, request)
    if ctx.faults.active(Fault.AUTHORIZE_REFUSALS_AS_503) and _is_refusal(response):
        # no Retry-After: a gateway's bare 503 (with one the harness waits it out, the sign-in's rate-limit budget)
        return PlainTextResponse("503 Service Temporarily Unavailable", status_code=503,
                                 headers={"Cache-Control": "no-store"})
    return response


def _is_refusal(response: Response) -> bool:
    """An error page, or a redirect carrying an OAuth error."""
    if 400 <= response.status_code < 500:
        return True
    location = response.headers.get("location", "")
    return 300 <= response.status_code < 400 and ("error=" in location.split("?", 1)[-1]
                                                    or "error=" in location.split("#", 1)[-1])


async def _authorize(ctx: Context, request: Request) -> Response:
    if request.method == "POST" and ctx.faults.active(Fault.AUTHORIZE_POST_UNSUPPORTED):
        return JSONResponse({"error": "invalid_request", "error_description": "use GET"}, status_code=405,
                            headers={"Allow": "GET"})
    params = await _params(request)
    if ctx.faults.active(Fault.AUTHORIZE_JUNK_500) and any(len(v) > 4096 for v in params.values()):
        try:  # the defect: an unchecked length reaches a fixed-size buffer
            raise ValueError("value too long for VARCHAR(4096) column 'authorize_requests.param'")
        except ValueError:
            return PlainTextResponse(traceback.format_exc(), status_code=500)
    client_id = params.get("client_id", "")
    redirect_uri = params.get("redirect_uri", "")
    for name in ("client_id", "redirect_uri"):
        if len(params.getlist(name)) > 1:
            return _untrusted(ctx, "invalid_request", f"{name} was sent more than once.")
    client = ctx.store.client(client_id) if client_id else None
    if client is None:
        if ctx.faults.active(Fault.UNKNOWN_CLIENT_REDIRECTS) and redirect_uri:
            return _error_redirect(ctx, redirect_uri, "unauthorized_client", "unknown client_id",
                                   params.get("state"))
        if ctx.faults.active(Fault.AUTHORIZE_ERROR_REFLECTS_INPUT):  # the defect: the input echoed as markup
            return page(ctx, "error.html", 400, raw={"description": f"Unknown client_id {client_id}."},
                        error="invalid_client")
        return _untrusted(ctx, "invalid_client", "The client_id is missing or not registered.")
    if not redirect_uri:
        return _untrusted(ctx, "invalid_request", "redirect_uri is required.")
    if not _redirect_uri_registered(ctx, json.loads(client["redirect_uris"]), redirect_uri):
        return _untrusted(ctx, "invalid_request", "The redirect_uri is not registered for this client.")

    # From here on the redirect target is trusted: errors go back to the app.
    state = params.get("state")
    for name in ("response_type", "state", "scope", "aud", "code_challenge", "code_challenge_method", "nonce"):
        if len(params.getlist(name)) > 1:
            return _error_redirect(ctx, redirect_uri, "invalid_request", f"{name} was sent more than once", state)
    response_type = params.get("response_type", "")
    implicit_ok = ctx.faults.active(Fault.IMPLICIT_GRANT_ALLOWED) and response_type == "token"
    if not response_type:
        return _error_redirect(ctx, redirect_uri, "invalid_request", "response_type is required", state)
    if response_type != "code" and not implicit_ok:
        # RFC 6749 §4.2.2.1: an implicit request's error goes in the fragment (variant implicit-error-in-fragment).
        in_fragment = response_type == "token" and ctx.variants.active(IMPLICIT_ERROR_IN_FRAGMENT)
        return _error_redirect(ctx, redirect_uri, "unsupported_response_type", "only response_type=code", state,
                               fragment=in_fragment)
    if not state:
        return _error_redirect(ctx, redirect_uri, "invalid_request", "state is required", state)
    aud = params.get("aud") or params.get("resource") or ""
    if not ctx.faults.active(Fault.AUD_NOT_VALIDATED):
        if not aud:
            return _error_redirect(ctx, redirect_uri, "invalid_request", "aud is required", state)
        if not _same_base(aud, ctx.fhir_base):
            return _error_redirect(ctx, redirect_uri, "invalid_request",
                                   "aud does not name this FHIR server", state)
    challenge = params.get("code_challenge") or None
    method = params.get("code_challenge_method") or None
    if response_type == "code":
        if challenge is None:
            if not ctx.faults.active(Fault.PKCE_NOT_REQUIRED):
                return _error_redirect(ctx, redirect_uri, "invalid_request", "code_challenge is required", state)
            method = None
        elif ctx.faults.active(Fault.PKCE_PLAIN_ACCEPTED) and method in (None, "plain"):
            method = "plain"
        elif method != "S256":
            return _error_redirect(ctx, redirect_uri, "invalid_request",
                                   "code_challenge_method must be S256 (plain is not supported)", state)
        elif not _CHALLENGE.match(challenge):
            return _error_redirect(ctx, redirect_uri, "invalid_request",
                                   "code_challenge must be 43 base64url characters", state)
    granted = scope_rules.grantable(params.get("scope", ""))
    if not granted:
        return _error_redirect(ctx, redirect_uri, "invalid_scope", "no supported scope was requested", state)

    browser = request.cookies.get(_browser_cookie(ctx)) or secrets.token_urlsafe(32)
    pending = {"client_id": client_id, "redirect_uri": redirect_uri, "state": state, "scopes": granted,
               "challenge": challenge, "method": method, "nonce": params.get("nonce"),
               "response_type": response_type, "prompt": params.get("prompt", "")}
    pending_id, _ = ctx.store.add_pending(pending, browser)
    member = _session_member(ctx, request)
    if member is not None:  # single sign-on: the member signed in earlier in this browser, no password asked again
        ctx.store.set_pending_user(pending_id, member)
        response = _signed_in(ctx, pending_id, pending, member)
    else:
        response = RedirectResponse(_sign_in_url(ctx, pending_id), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    if ctx.faults.active(Fault.SESSION_COOKIE_UNPROTECTED):  # the defect: a bare cookie (no __Host- prefix allowed)
        response.set_cookie(_browser_cookie(ctx), browser, httponly=False, secure=False, samesite=None, path="/")
    else:
        response.set_cookie(BROWSER_COOKIE, browser, httponly=True, secure=True, samesite="lax", path="/")
    return response


def _sign_in_url(ctx: Context, pending_id: str) -> str:
    """Where the member signs in: this server's page, or (separate-idp-origin) the identity provider's, on its own
    origin, handed the pending request as its login challenge."""
    if ctx.variants.active(SEPARATE_IDP_ORIGIN):
        return ctx.idp_url(f"/idp/login?{urlencode({'login_challenge': pending_id})}")
    return f"/auth/login?{urlencode({'req': pending_id})}"


def _session_member(ctx: Context, request: Request) -> str | None:
    """The member of the identity-provider session this browser holds (None: sign in; or no-sign-in-session; or
    separate-idp-origin, where the session is the identity provider's, on its origin)."""
    session = request.cookies.get(SESSION_COOKIE)
    if not session or ctx.variants.active(NO_SIGN_IN_SESSION) or ctx.variants.active(SEPARATE_IDP_ORIGIN):
        return None
    return ctx.store.session_user(session)


def _signed_in(ctx: Context, pending_id: str, params: dict[str, Any], username: str) -> Response:
    """The member is known (password just checked, or the session): on to consent (under consent-skipped, the
    code at once)."""
    if ctx.faults.active(Fault.CONSENT_SKIPPED):
        if not ctx.store.take_pending(pending_id):
            return error_page(ctx, "invalid_request", "This sign-in request was already completed.")
        member = ctx.store.member(username)
        patients = json.loads(member["patients"]) if member else []
        return _finish(ctx, params, username, params["scopes"], patients[0] if patients else None)
    return RedirectResponse(f"/auth/consent?{urlencode({'req': pending_id})}", status_code=303)


def _browser_cookie(ctx: Context) -> str:
    """The browser-binding cookie's name: ``__Host-`` needs Secure, so the unprotected-cookie fault drops it."""
    return BROWSER_COOKIE.removeprefix("__Host-") if ctx.faults.active(Fault.SESSION_COOKIE_UNPROTECTED) \
        else BROWSER_COOKIE


def _csrf_ok(ctx: Context, request: Request, pending: Any, form: FormData) -> bool:
    """The form's token must match the pending request, and the request must come from the browser that began it."""
    if ctx.faults.active(Fault.LOGIN_NO_CSRF):
        return True
    token = str(form.get("csrf_token", ""))
    browser = request.cookies.get(_browser_cookie(ctx), "")
    browser_ok = hmac.compare_digest(hashlib.sha256(browser.encode()).hexdigest(), pending["browser"])
    return bool(token) and hmac.compare_digest(token, pending["csrf"]) and browser_ok


_USERNAME_FIELD = ('<p><label for="username">Username</label> <input type="text" id="username" name="username" '
                   'autocomplete="username" required></p>')
_PASSWORD_FIELD = ('<p><label for="password">Password</label> <input type="password" id="password" name="password" '
                   'autocomplete="current-password" required></p>')

# The script-rendered sign-in (variant script-rendered-sign-in): the page loads empty, then a script waits a moment,
# fetches the form from this origin and builds it, as a single-page app's sign-in does.
_SIGN_IN_SCRIPT = """<script nonce="{nonce}">
(async () => {{
  await new Promise((done) => setTimeout(done, 400));
  const reply = await fetch({url}, {{credentials: "same-origin", cache: "no-store"}});
  const holder = document.createElement("div");
  holder.id = "sign-in-form";
  holder.innerHTML = await reply.text();
  document.getElementById("sign-in").appendChild(holder);
}})();
</script>"""


def _login_form(ctx: Context, pending_id: str, pending: Any, stage: str, username: str = "", *,
                action: str = "/auth/login", handle: str = "req", csrf: str | None = None) -> str:
    """The sign-in form: both fields, or (two-page-sign-in) the username page, then the password page. ``action``,
    ``handle`` and ``csrf``: the form of the identity provider on its own origin (separate-idp-origin)."""
    token = pending["csrf"] if csrf is None else csrf
    csrf_field = ("" if ctx.faults.active(Fault.LOGIN_NO_CSRF)
                  else f'<input type="hidden" name="csrf_token" value="{esc(token)}">')
    if stage == "username":
        fields = '<input type="hidden" name="stage" value="username">' + _USERNAME_FIELD
        button = "Next"
    elif stage == "password":
        fields = (f'<input type="hidden" name="username" value="{esc(username)}">'
                  f'<p id="signing-in-as">Signing in as <strong>{esc(username)}</strong></p>' + _PASSWORD_FIELD)
        button = "Sign in"
    else:
        fields, button = _USERNAME_FIELD + "\n" + _PASSWORD_FIELD, "Sign in"
    return (f'<form method="post" action="{esc(action)}">\n<input type="hidden" name="{esc(handle)}" '
            f'value="{esc(pending_id)}">\n{csrf_field}\n{fields}\n<p><button type="submit">{button}</button></p>\n</form>')


def _first_stage(ctx: Context) -> str:
    return "username" if ctx.variants.active(TWO_PAGE_SIGN_IN) else "both"


def _login_page(ctx: Context, pending_id: str, pending: Any, status: int = 200, error: str = "", *,
                stage: str | None = None, username: str = "", **form_args: Any) -> Response:
    """The sign-in page (``form_args``: see :func:`_login_form`)."""
    params = json.loads(pending["params"])
    client = ctx.store.client(params["client_id"])
    stage = stage or _first_stage(ctx)
    error_html = f'<p class="error" role="alert" id="login-error">{esc(error)}</p>' if error else ""
    form = _login_form(ctx, pending_id, pending, stage, username, **form_args)
    script, nonce = "", None
    if ctx.variants.active(SCRIPT_RENDERED_SIGN_IN) and stage != "password":
        nonce = secrets.token_urlsafe(16)
        url = json.dumps(f"/auth/login?{urlencode({'req': pending_id, 'part': 'form'})}")
        form, script = "", _SIGN_IN_SCRIPT.format(nonce=nonce, url=url)  # a JSON string of URL-safe characters
    return page(ctx, "login.html", status, raw={"form": form, "error": error_html, "script": script},
                script_nonce=nonce, client_name=client["name"] if client else params["client_id"])


async def login(request: Request) -> Response:
    ctx = ctx_of(request)
    if request.method == "GET":
        back = request.query_params.get("return_to") or request.query_params.get("next")
        if back and ctx.faults.active(Fault.SIGN_IN_OPEN_REDIRECT):  # the defect: any destination, unchecked
            return RedirectResponse(back, status_code=303)
        pending_id = request.query_params.get("req", "")
        pending = ctx.store.pending(pending_id)
        if pending is None:
            return error_page(ctx, "invalid_request", "This sign-in request is unknown or has expired.")
        if ctx.variants.active(SEPARATE_IDP_ORIGIN):  # members sign in at the identity provider, not here
            return RedirectResponse(_sign_in_url(ctx, pending_id), status_code=303, headers={"Cache-Control": "no-store"})
        if request.query_params.get("part") != "form" and (limited := idp.rate_limited(ctx, request)) is not None:
            return limited
        if request.query_params.get("part") == "form" and ctx.variants.active(SCRIPT_RENDERED_SIGN_IN):
            fragment = HTMLResponse(_login_form(ctx, pending_id, pending, _first_stage(ctx)))
            fragment.headers["Cache-Control"] = "no-store"
            return fragment
        return _idp_cookie(ctx, _login_page(ctx, pending_id, pending), "XSRF-TOKEN")
    form = await request.form()
    pending_id = str(form.get("req", ""))
    pending = ctx.store.pending(pending_id)
    if pending is None:
        return error_page(ctx, "invalid_request", "This sign-in request is unknown or has expired.")
    if ctx.variants.active(SEPARATE_IDP_ORIGIN):  # no password is taken here: the identity provider signs members in
        return error_page(ctx, "invalid_request", "Sign in at the identity provider's page.", 403)
    if not _csrf_ok(ctx, request, pending, form):
        return error_page(ctx, "invalid_request", "The form could not be verified (CSRF check failed).", 403)
    checked = verify_password(ctx, form, lambda **page_args: _login_page(ctx, pending_id, pending, **page_args))
    if not isinstance(checked, str):
        return checked
    username = checked
    if (next_page := idp.after_password(ctx, pending_id, username)) is not None:
        return _idp_cookie(ctx, next_page, "idp_session")  # the code page or the prompts (variants of issue 20)
    ctx.store.set_pending_user(pending_id, username)
    if ctx.faults.active(Fault.SIGN_IN_307) and not ctx.faults.active(Fault.CONSENT_SKIPPED):
        # the defect: 307 keeps the method and body, password included
        response: Response = RedirectResponse(f"/auth/login/continue?{urlencode({'req': pending_id})}",
                                              status_code=307)
    else:
        response = _signed_in(ctx, pending_id, json.loads(pending["params"]), username)
    response.headers["Cache-Control"] = "no-store"
    if not ctx.variants.active(NO_SIGN_IN_SESSION):
        response.set_cookie(SESSION_COOKIE, ctx.store.add_session(username), httponly=True, secure=True,
                            samesite="lax", path="/")
    return _idp_cookie(ctx, response, "idp_session")


def verify_password(ctx: Context, form: FormData, render: Callable[..., Response]) -> Response | str:
    """The posted sign-in form judged: the member's username when the password is right, else the page to show (the
    password page of a two-page sign-in, the form again with an error, a locked account). ``render`` draws the
    sign-in page (here, or the identity provider's on its own origin)."""
    username = str(form.get("username", ""))
    if ctx.variants.active(TWO_PAGE_SIGN_IN) and form.get("stage") == "username":
        # The password page comes whatever the username: it must not tell who is a member.
        return render(stage="password", username=username)
    member = ctx.store.member(username)
    if (locked := idp.locked_page(ctx, username)) is not None:
        return locked
    password_ok = member is not None and (ctx.faults.active(Fault.LOGIN_ACCEPTS_ANY_PASSWORD)
                                          or check_secret(str(form.get("password", "")), member["password_hash"]))
    if (locked := idp.password_result(ctx, username, password_ok)) is not None:
        return locked
    if not password_ok:
        again = "password" if ctx.variants.active(TWO_PAGE_SIGN_IN) else None
        return render(status=401, error="Incorrect username or password.", stage=again, username=username)
    return username


async def login_return(request: Request) -> Response:
    """separate-idp-origin: the identity provider sends the browser back with a one-time login verifier; the member
    it names is signed in for the pending request, if this is the browser that began it. Then consent."""
    ctx = ctx_of(request)
    accepted = idp.take_login(ctx, request.query_params.get("login_verifier", ""))
    pending = ctx.store.pending(accepted[0]) if accepted is not None else None
    if accepted is None or pending is None:
        return error_page(ctx, "invalid_request", "This sign-in is unknown, has expired or was already used.")
    pending_id, username = accepted
    browser = request.cookies.get(_browser_cookie(ctx), "")
    if not hmac.compare_digest(hashlib.sha256(browser.encode()).hexdigest(), pending["browser"]):
        return error_page(ctx, "invalid_request", "This sign-in was started in another browser.", 403)
    ctx.store.set_pending_user(pending_id, username)
    response = _signed_in(ctx, pending_id, json.loads(pending["params"]), username)
    response.headers["Cache-Control"] = "no-store"
    return response


async def login_continue(request: Request) -> Response:
    """Where the sign-in-307 fault sends the re-posted sign-in form: on to the consent page."""
    pending_id = request.query_params.get("req", "")
    response = RedirectResponse(f"/auth/consent?{urlencode({'req': pending_id})}", status_code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


def _idp_cookie(ctx: Context, response: Response, name: str) -> Response:
    """hosted-idp-cookies: a script-readable double-submit XSRF cookie on the sign-in page, and an identity
    provider's cross-site session cookie (SameSite=None, Secure, HttpOnly) once the password is right."""
    if ctx.variants.active(HOSTED_IDP_COOKIES):
        if name == "XSRF-TOKEN":
            response.set_cookie(name, secrets.token_urlsafe(16), secure=True, httponly=False, samesite="strict",
                                path="/auth")
        else:
            response.set_cookie(name, secrets.token_urlsafe(32), secure=True, httponly=True, samesite="none",
                                path="/")
    return response


_SCOPE_TEXT = {
    "openid": "Confirm your identity to the app (OpenID Connect)",
    "fhirUser": "Tell the app which member record is yours",
    "launch/patient": "Open the app with your member record selected",
    "offline_access": "Keep access when you are not using the app (until you revoke it)",
    "online_access": "Keep access while you are signed in",
}


def _scope_label(scope: str) -> str:
    if scope in _SCOPE_TEXT:
        return _SCOPE_TEXT[scope]
    rtype = scope.split("/", 1)[1].split(".", 1)[0]
    what = "all of your records, including types added in future" if rtype == "*" else f"your {rtype} records"
    return f"Read {what}"


async def consent(request: Request) -> Response:
    ctx = ctx_of(request)
    if request.method == "GET":
        pending_id = request.query_params.get("req", "")
        pending = ctx.store.pending(pending_id)
        if pending is None or not pending["username"]:
            return error_page(ctx, "invalid_request", "This sign-in request is unknown or has expired.")
        patient = _remembered(ctx, pending)
        if patient is not None:  # remembered-consent: the member approved this much for this client before
            if not ctx.store.take_pending(pending_id):
                return error_page(ctx, "invalid_request", "This sign-in request was already completed.")
            params = json.loads(pending["params"])
            return _finish(ctx, params, pending["username"], params["scopes"], patient)
        return _consent_page(ctx, pending_id, pending)
    form = await request.form()
    pending_id = str(form.get("req", ""))
    pending = ctx.store.pending(pending_id)
    if pending is None or not pending["username"]:
        return error_page(ctx, "invalid_request", "This sign-in request is unknown or has expired.")
    if not _csrf_ok(ctx, request, pending, form):
        return error_page(ctx, "invalid_request", "The form could not be verified (CSRF check failed).", 403)
    params = json.loads(pending["params"])
    if not ctx.store.take_pending(pending_id):
        return error_page(ctx, "invalid_request", "This sign-in request was already completed.")
    decision = str(form.get("decision", ""))
    if decision != "allow" and not ctx.faults.active(Fault.DENY_RETURNS_CODE):
        return _error_redirect(ctx, params["redirect_uri"], "access_denied", "the member denied access",
                               params["state"])
    requested: list[str] = params["scopes"]
    if ctx.faults.active(Fault.CONSENT_IGNORES_UNTICKED) or ctx.variants.active(CONSENT_WITHOUT_SCOPE_CONTROLS):
        granted = list(requested)  # (the variant's page offers no per-scope choice: Allow grants what was asked)
    else:
        ticked = set(form.getlist("scope"))
        granted = [s for s in requested if s in ticked]
    if not granted:
        return _error_redirect(ctx, params["redirect_uri"], "access_denied", "the member approved no access",
                               params["state"])
    member = ctx.store.member(pending["username"])
    patients: list[str] = json.loads(member["patients"]) if member else []
    chosen = str(form.get("patient", "")) or (patients[0] if patients else "")
    if chosen not in patients:
        return _error_redirect(ctx, params["redirect_uri"], "invalid_request", "unknown patient choice",
                               params["state"])
    if ctx.variants.active(REMEMBERED_CONSENT):
        ctx.store.remember_consent(pending["username"], params["client_id"], granted)
    return _finish(ctx, params, pending["username"], granted, chosen)


def _remembered(ctx: Context, pending: Any) -> str | None:
    """remembered-consent: the patient of a consent the server remembers for everything this request asks (None: show
    the page). Not with prompt=consent (OpenID Connect Core §3.1.2.1), nor when the member has records of several
    patients to choose from: that choice is the launch's context, asked each time."""
    if not ctx.variants.active(REMEMBERED_CONSENT):
        return None
    params = json.loads(pending["params"])
    if "consent" in str(params.get("prompt") or "").split():
        return None
    member = ctx.store.member(pending["username"])
    patients: list[str] = json.loads(member["patients"]) if member else []
    remembered = ctx.store.remembered_consent(pending["username"], params["client_id"])
    if len(patients) != 1 or not set(params["scopes"]) <= remembered:
        return None
    return patients[0]


def _consent_page(ctx: Context, pending_id: str, pending: Any) -> Response:
    params = json.loads(pending["params"])
    member = ctx.store.member(pending["username"])
    client = ctx.store.client(params["client_id"])
    client_name = esc(client["name"] if client else params["client_id"])
    if ctx.variants.active(CONSENT_WITHOUT_SCOPE_CONTROLS):
        items = "".join(f"<li>{esc(_scope_label(scope))} <code>{esc(scope)}</code></li>" for scope in params["scopes"])
        section = f'<p>{client_name} asks for the following access.</p>\n<ul id="scopes">{items}</ul>'
    else:
        boxes = [f'<p><input type="checkbox" name="scope" id="scope-{n}" value="{esc(scope)}" checked> '
                 f'<label for="scope-{n}">{esc(_scope_label(scope))} <code>{esc(scope)}</code></label></p>'
                 for n, scope in enumerate(params["scopes"])]
        section = (f"<fieldset>\n<legend>{client_name} asks for the following access. Untick anything you do not "
                   f"want to share.</legend>\n" + "\n".join(boxes) + "\n</fieldset>")
    patients: list[str] = json.loads(member["patients"]) if member else []
    if len(patients) > 1:
        options = "".join(f'<p><input type="radio" name="patient" id="patient-{n}" value="{esc(p)}"'
                          f'{" checked" if n == 0 else ""}> <label for="patient-{n}">{esc(_patient_name(ctx, p))}'
                          f'</label></p>' for n, p in enumerate(patients))
        choice = f"<fieldset><legend>Whose records?</legend>{options}</fieldset>"
    elif patients:
        choice = (f'<p id="patient-context">Records of <strong>{esc(_patient_name(ctx, patients[0]))}</strong></p>'
                  f'<input type="hidden" name="patient" value="{esc(patients[0])}">')
    else:
        choice = ""
    return page(ctx, "consent.html", raw={"scope_section": section, "patient_choice": choice},
                client_name=client["name"] if client else params["client_id"],
                member=member["display"] if member else "", req=pending_id, csrf=pending["csrf"])


def _patient_name(ctx: Context, patient_id: str) -> str:
    resource = ctx.data.get("Patient", patient_id) or {}
    name = (resource.get("name") or [{}])[0]
    return " ".join([*name.get("given", []), name.get("family", "")]).strip() or patient_id


def _finish(ctx: Context, params: dict[str, Any], username: str, granted: list[str],
            patient: str | None) -> Response:
    """Consent given: issue the code (or, under implicit-grant-allowed, the token itself)."""
    patient_ctx = patient if ("launch/patient" in granted or scope_rules.has_patient_scopes(granted)) else None
    scope = " ".join(granted)
    if params["response_type"] == "token":
        grant_id = ctx.store.add_grant(client_id=params["client_id"], username=username, scope=scope,
                                       patient=patient_ctx)
        token, _ = _access_token(ctx, grant_id, params["client_id"], username, scope, patient_ctx)
        fragment = {"access_token": token, "token_type": "Bearer", "expires_in": str(ctx.access_token_ttl),
                    "scope": scope, "state": params["state"]}
        return _redirect(params["redirect_uri"], fragment, fragment=True)
    code = ctx.store.add_code(client_id=params["client_id"], redirect_uri=params["redirect_uri"],
                              challenge=params["challenge"], method=params["method"], scope=scope,
                              patient=patient_ctx, username=username, nonce=params.get("nonce"), ttl=CODE_TTL,
                              code=f"{secrets.randbelow(10**8):08d}" if ctx.faults.active(Fault.SHORT_AUTHORIZATION_CODES)
                              else None)  # the defect: eight digits
    return _success_redirect(ctx, params["redirect_uri"], code, params["state"])


# --- introspection and revocation ----------------------------------------------------------------------------
def _json_no_store(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    response = JSONResponse(body, status_code=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _post_only() -> JSONResponse:
    """RFC 7662 §2.1 / RFC 7009 §2.1 define a POST with a form body: any other method is refused unread."""
    return _json_no_store({"error": "invalid_request", "error_description": "this endpoint accepts POST only"}, 405,
                          {"Allow": "POST"})


def _unauthenticated(ctx: Context, request: Request) -> JSONResponse:
    return _json_no_store({"error": "invalid_client", "error_description": "client authentication failed"}, 401,
                          _challenge(ctx, request))


def opaque_access_claims(ctx: Context, token: str) -> dict[str, Any] | None:
    """With opaque access tokens on: the claims a handle stands for, from the store (None: not one of ours)."""
    if not ctx.variants.active(OPAQUE_ACCESS_TOKENS) or token.count(".") == 2:
        return None
    row = ctx.store.access_token(token)
    if row is None:
        return None
    member = ctx.store.member(row["username"])
    claims: dict[str, Any] = {"iss": ctx.issuer, "aud": ctx.fhir_base, "jti": row["jti"], "scope": row["scope"],
                              "client_id": row["client_id"], "sub": member["sub"] if member else row["username"],
                              "iat": int(row["iat"]), "exp": int(row["exp"])}
    if row["patient"]:
        claims["patient"] = row["patient"]
    return claims


def _decode_access(ctx: Context, token: str) -> dict[str, Any] | None:
    """Our own access token's claims if its signature verifies (expiry is judged by the caller)."""
    opaque = opaque_access_claims(ctx, token)
    if opaque is not None:
        return opaque
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = ctx.keys.public_key(kid)
        if key is None:
            return None
        claims: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"], audience=ctx.fhir_base,
                                            issuer=ctx.issuer, options={"verify_exp": False})
        return claims
    except jwt.PyJWTError:
        return None


async def introspect(request: Request) -> Response:
    ctx = ctx_of(request)
    if request.method != "POST" and not (request.method == "GET"
                                         and ctx.faults.active(Fault.INTROSPECTION_ACCEPTS_GET)):
        return _post_only()
    form = request.query_params if request.method == "GET" else await request.form()
    caller = authenticate_client(ctx, request, form)
    if caller is None and not ctx.faults.active(Fault.INTROSPECT_UNAUTHENTICATED):
        if ctx.faults.active(Fault.INTROSPECTION_ERROR_NOT_401):
            return _json_no_store({"error": "access_denied", "error_description": "not allowed"}, 403)
        return _unauthenticated(ctx, request)
    presented = str(form.get("token", ""))
    if not presented:
        return _json_no_store({"error": "invalid_request", "error_description": "token is required"}, 400)
    inactive = _json_no_store({"active": False})
    ignore_revoked = ctx.faults.active(Fault.INTROSPECT_REVOKED_ACTIVE)
    claims = _decode_access(ctx, presented)
    if claims is None and ctx.faults.active(Fault.INTROSPECTION_IGNORES_SIGNATURE):  # the defect: claims unverified
        try:
            claims = jwt.decode(presented, options={"verify_signature": False})
        except jwt.PyJWTError:
            claims = None
    now = ctx.now()
    if claims is None and ctx.faults.active(Fault.INTROSPECT_UNKNOWN_ERROR) and ctx.store.refresh_token(presented) is None:
        return _json_no_store({"error": "invalid_request", "error_description": "malformed token"}, 400)
    if claims is not None:
        row = ctx.store.access_token(str(claims.get("jti", "")))
        if row is None or (row["revoked"] and not ignore_revoked) or row["exp"] < now:
            return inactive
        if caller is not None and row["client_id"] != caller:
            return inactive
        body: dict[str, Any] = {"active": True, "scope": row["scope"], "client_id": row["client_id"],
                                "exp": int(row["exp"]), "iat": int(row["iat"]), "sub": claims["sub"],
                                "iss": ctx.issuer, "aud": ctx.fhir_base, "token_type": "Bearer"}
        member = ctx.store.member(row["username"])
        if member is not None and "fhirUser" in row["scope"].split():
            body["fhirUser"] = f"{ctx.fhir_base}/{member['fhir_user']}"
        if row["patient"] and not ctx.faults.active(Fault.INTROSPECT_MISSING_PATIENT):
            body["patient"] = row["patient"]
        return _json_no_store(body)
    refresh = ctx.store.refresh_token(presented)
    if refresh is None or (refresh["revoked"] and not ignore_revoked) or refresh["exp"] < now:
        return inactive
    if caller is not None and refresh["client_id"] != caller:
        return inactive
    grant = ctx.store.grant(refresh["grant_id"])
    body = {"active": True, "scope": refresh["scope"], "client_id": refresh["client_id"],
            "exp": int(refresh["exp"]), "iat": int(refresh["iat"]), "iss": ctx.issuer,
            "token_type": "refresh_token"}
    if grant is not None:
        member = ctx.store.member(grant["username"])
        if member is not None:
            body["sub"] = member["sub"]
        if grant["patient"] and not ctx.faults.active(Fault.INTROSPECT_MISSING_PATIENT):
            body["patient"] = grant["patient"]
    return _json_no_store(body)


async def revoke(request: Request) -> Response:
    ctx = ctx_of(request)
    if request.method != "POST" and not (request.method == "GET" and ctx.faults.active(Fault.REVOCATION_ACCEPTS_GET)):
        return _post_only()
    form = request.query_params if request.method == "GET" else await request.form()
    caller = authenticate_client(ctx, request, form)
    presented = str(form.get("token", ""))
    if caller is None and ctx.faults.active(Fault.REVOCATION_WITHOUT_CLIENT_AUTH):
        caller = _token_owner(ctx, presented)  # the fault: whoever holds a token may revoke it
    if caller is None:
        if ctx.faults.active(Fault.REVOCATION_ERROR_WITHOUT_BODY):
            return Response(status_code=401)
        return _unauthenticated(ctx, request)
    if not presented:
        return _json_no_store({"error": "invalid_request", "error_description": "token is required"}, 400)
    ok = Response(status_code=200, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
    claims = _decode_access(ctx, presented)
    if claims is not None:
        row = ctx.store.access_token(str(claims.get("jti", "")))
        if ctx.variants.active(ONLY_REFRESH_TOKENS_REVOCABLE):
            # RFC 7009 §2.2.1: the defined answer of a server that does not revoke this type of token.
            return _json_no_store({"error": "unsupported_token_type",
                                   "error_description": "only refresh tokens can be revoked"}, 400)
        if row is None:
            return ok
        if not _issued_to(ctx, row["client_id"], caller):
            return _json_no_store({"error": "unauthorized_client",
                                   "error_description": "the token was issued to another client"}, 400)
        if not ctx.faults.active(Fault.REVOCATION_IGNORED):
            ctx.store.revoke_access_token(row["jti"])
        return ok
    refresh = ctx.store.refresh_token(presented)
    if refresh is None:
        return ok  # RFC 7009 §2.2: unknown or already invalid tokens are not an error
    if not _issued_to(ctx, refresh["client_id"], caller):
        return _json_no_store({"error": "unauthorized_client",
                               "error_description": "the token was issued to another client"}, 400)
    if not ctx.faults.active(Fault.REFRESH_SURVIVES_REVOCATION):
        ctx.store.revoke_refresh_token(presented)
    if ctx.variants.active(ONLY_REFRESH_TOKENS_REVOCABLE):
        return ok  # access tokens are not revocable here: they live until they expire (RFC 7009 §2.1)
    if ctx.variants.active(REVOKE_ALL_ON_REFRESH_REVOCATION):
        grant = ctx.store.grant(refresh["grant_id"])
        if grant is not None:
            ctx.store.revoke_member_grants(username=grant["username"], client_id=refresh["client_id"])
    if not ctx.faults.active(Fault.ACCESS_SURVIVES_REFRESH_REVOCATION):
        ctx.store.revoke_access_tokens_of_grant(refresh["grant_id"])
    return ok


def _issued_to(ctx: Context, owner: str, caller: str) -> bool:
    """RFC 7009 §2.1: the server verifies that the token was issued to the client asking for its revocation."""
    return owner == caller or ctx.faults.active(Fault.REVOCATION_CROSS_CLIENT)  # the fault: any client may


def _token_owner(ctx: Context, presented: str) -> str | None:
    """The client a token was issued to (used only by the revocation-without-client-auth fault)."""
    claims = _decode_access(ctx, presented) if presented else None
    if claims is not None:
        row = ctx.store.access_token(str(claims.get("jti", "")))
        return str(row["client_id"]) if row is not None else None
    refresh = ctx.store.refresh_token(presented) if presented else None
    return str(refresh["client_id"]) if refresh is not None else None
