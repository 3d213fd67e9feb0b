"""The authorization server: authorize, member sign-in and consent, token, introspection, revocation.

Error policy (RFC 6749 §4.1.2.1): problems found before the client and its redirect_uri are trusted (unknown
client_id, unregistered or altered redirect_uri) get an HTML error page and never a redirect; everything later is
redirected back with ``error``, ``error_description`` and the unchanged ``state``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from typing import Any
from urllib.parse import quote, unquote_plus, urlencode, urlsplit, urlunsplit

import jwt
from starlette.datastructures import FormData, MultiDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from smart_conformance.reference import scopes as scope_rules
from smart_conformance.reference.context import (
    CODE_TTL,
    REFRESH_TOKEN_TTL,
    Context,
    ctx_of,
)
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.pages import error_page, esc, page
from smart_conformance.reference.store import check_secret
from smart_conformance.reference.variants import (
    AUTHORIZE_REFUSAL_EMPTY_400,
    CLIENT_SECRET_POST_ONLY,
    CONSENT_WITHOUT_SCOPE_CONTROLS,
    IMPLICIT_ERROR_IN_FRAGMENT,
    JWT_ACCESS_TOKENS,
    ONLY_REFRESH_TOKENS_REVOCABLE,
    OPAQUE_ACCESS_TOKENS,
    REVOKE_ALL_ON_REFRESH_REVOCATION,
    ROTATING_REFRESH_TOKENS,
    SCRIPT_RENDERED_SIGN_IN,
    TOKEN_401_WITHOUT_WWW_AUTHENTICATE,
    TWO_PAGE_SIGN_IN,
)

BROWSER_COOKIE = "__Host-smartref_browser"
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
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
    return _redirect(uri, {"code": code, "state": state, "iss": ctx.issuer})


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
    if request.method == "POST" and ctx.faults.active(Fault.AUTHORIZE_POST_UNSUPPORTED):
        return JSONResponse({"error": "invalid_request", "error_description": "use GET"}, status_code=405,
                            headers={"Allow": "GET"})
    params = await _params(request)
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

    browser = request.cookies.get(BROWSER_COOKIE) or secrets.token_urlsafe(32)
    pending = {"client_id": client_id, "redirect_uri": redirect_uri, "state": state, "scopes": granted,
               "challenge": challenge, "method": method, "nonce": params.get("nonce"),
               "response_type": response_type}
    pending_id, _ = ctx.store.add_pending(pending, browser)
    response = RedirectResponse(f"/auth/login?{urlencode({'req': pending_id})}", status_code=303)
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(BROWSER_COOKIE, browser, httponly=True, secure=True, samesite="lax", path="/")
    return response


def _csrf_ok(ctx: Context, request: Request, pending: Any, form: FormData) -> bool:
    """The form's token must match the pending request, and the request must come from the browser that began it."""
    if ctx.faults.active(Fault.LOGIN_NO_CSRF):
        return True
    token = str(form.get("csrf_token", ""))
    browser = request.cookies.get(BROWSER_COOKIE, "")
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


def _login_form(ctx: Context, pending_id: str, pending: Any, stage: str, username: str = "") -> str:
    """The sign-in form: both fields, or (two-page-sign-in) the username page, then the password page."""
    csrf_field = ("" if ctx.faults.active(Fault.LOGIN_NO_CSRF)
                  else f'<input type="hidden" name="csrf_token" value="{esc(pending["csrf"])}">')
    if stage == "username":
        fields = '<input type="hidden" name="stage" value="username">' + _USERNAME_FIELD
        button = "Next"
    elif stage == "password":
        fields = (f'<input type="hidden" name="username" value="{esc(username)}">'
                  f'<p id="signing-in-as">Signing in as <strong>{esc(username)}</strong></p>' + _PASSWORD_FIELD)
        button = "Sign in"
    else:
        fields, button = _USERNAME_FIELD + "\n" + _PASSWORD_FIELD, "Sign in"
    return (f'<form method="post" action="/auth/login">\n<input type="hidden" name="req" value="{esc(pending_id)}">\n'
            f'{csrf_field}\n{fields}\n<p><button type="submit">{button}</button></p>\n</form>')


def _first_stage(ctx: Context) -> str:
    return "username" if ctx.variants.active(TWO_PAGE_SIGN_IN) else "both"


def _login_page(ctx: Context, pending_id: str, pending: Any, status: int = 200, error: str = "", *,
                stage: str | None = None, username: str = "") -> Response:
    params = json.loads(pending["params"])
    client = ctx.store.client(params["client_id"])
    stage = stage or _first_stage(ctx)
    error_html = f'<p class="error" role="alert" id="login-error">{esc(error)}</p>' if error else ""
    form = _login_form(ctx, pending_id, pending, stage, username)
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
        pending_id = request.query_params.get("req", "")
        pending = ctx.store.pending(pending_id)
        if pending is None:
            return error_page(ctx, "invalid_request", "This sign-in request is unknown or has expired.")
        if request.query_params.get("part") == "form" and ctx.variants.active(SCRIPT_RENDERED_SIGN_IN):
            fragment = HTMLResponse(_login_form(ctx, pending_id, pending, _first_stage(ctx)))
            fragment.headers["Cache-Control"] = "no-store"
            return fragment
        return _login_page(ctx, pending_id, pending)
    form = await request.form()
    pending_id = str(form.get("req", ""))
    pending = ctx.store.pending(pending_id)
    if pending is None:
        return error_page(ctx, "invalid_request", "This sign-in request is unknown or has expired.")
    if not _csrf_ok(ctx, request, pending, form):
        return error_page(ctx, "invalid_request", "The form could not be verified (CSRF check failed).", 403)
    username = str(form.get("username", ""))
    if ctx.variants.active(TWO_PAGE_SIGN_IN) and form.get("stage") == "username":
        # The password page comes whatever the username: it must not tell who is a member.
        return _login_page(ctx, pending_id, pending, stage="password", username=username)
    member = ctx.store.member(username)
    password_ok = member is not None and (ctx.faults.active(Fault.LOGIN_ACCEPTS_ANY_PASSWORD)
                                          or check_secret(str(form.get("password", "")), member["password_hash"]))
    if not password_ok:
        again = "password" if ctx.variants.active(TWO_PAGE_SIGN_IN) else None
        return _login_page(ctx, pending_id, pending, 401, "Incorrect username or password.", stage=again,
                           username=username)
    ctx.store.set_pending_user(pending_id, username)
    if ctx.faults.active(Fault.CONSENT_SKIPPED):
        params = json.loads(pending["params"])
        if not ctx.store.take_pending(pending_id):
            return error_page(ctx, "invalid_request", "This sign-in request was already completed.")
        patients = json.loads(member["patients"])  # type: ignore[index]
        return _finish(ctx, params, username, params["scopes"], patients[0] if patients else None)
    response = RedirectResponse(f"/auth/consent?{urlencode({'req': pending_id})}", status_code=303)
    response.headers["Cache-Control"] = "no-store"
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
    return _finish(ctx, params, pending["username"], granted, chosen)


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
                              patient=patient_ctx, username=username, nonce=params.get("nonce"), ttl=CODE_TTL)
    return _success_redirect(ctx, params["redirect_uri"], code, params["state"])


# --- token endpoint ------------------------------------------------------------------------------------------
def _token_response(ctx: Context, body: dict[str, Any], status: int = 200,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    response = JSONResponse(body, status_code=status, headers=headers)
    if not ctx.faults.active(Fault.TOKEN_NO_STORE_MISSING):
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


def _oauth_error(ctx: Context, error: str, description: str, status: int = 400) -> JSONResponse:
    return _token_response(ctx, {"error": error, "error_description": description}, status)


_BASIC_CHALLENGE = 'Basic realm="reference-payer-token", charset="UTF-8"'


def _challenge(ctx: Context, request: Request) -> dict[str, str]:
    """RFC 6749 §5.2: WWW-Authenticate is required on a 401 only when the client tried the Authorization header;
    under the token-401-without-www-authenticate variant it is left out otherwise."""
    if ctx.variants.active(TOKEN_401_WITHOUT_WWW_AUTHENTICATE) and not request.headers.get("authorization"):
        return {}
    return {"WWW-Authenticate": _BASIC_CHALLENGE}


def _invalid_client(ctx: Context, description: str, request: Request) -> JSONResponse:
    if ctx.faults.active(Fault.INVALID_CLIENT_WITHOUT_401):
        return _token_response(ctx, {"error": "invalid_client", "error_description": description}, 400)
    return _token_response(ctx, {"error": "invalid_client", "error_description": description}, 401,
                           _challenge(ctx, request))


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """HTTP Basic per RFC 6749 §2.3.1: id and secret are form-urlencoded before base64."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


def _post_credentials(form: Any) -> tuple[str, str] | None:
    """client_secret_post (RFC 6749 §2.3.1): client_id and client_secret as form parameters."""
    if form is None or not form.get("client_id") or "client_secret" not in form:
        return None
    return str(form.get("client_id")), str(form.get("client_secret"))


def authenticate_client(ctx: Context, request: Request, form: Any = None) -> str | None:
    """The authenticated client_id, or None. By default clients are registered for client_secret_basic; under the
    client-secret-post-only variant they are registered for client_secret_post, and only that method is accepted
    for them (OpenID Connect Registration's token_endpoint_auth_method)."""
    if ctx.variants.active(CLIENT_SECRET_POST_ONLY):
        creds = None if request.headers.get("authorization") else _post_credentials(form)
    else:
        creds = basic_credentials(request)
    if creds is None:
        return None
    client_id, secret = creds
    client = ctx.store.client(client_id)
    if client is None:
        return None
    if ctx.faults.active(Fault.WRONG_SECRET_ACCEPTED) or check_secret(secret, client["secret_hash"]):
        return client_id
    return None


def _access_token(ctx: Context, grant_id: str, client_id: str, username: str, scope: str,
                  patient: str | None) -> tuple[str, float]:
    member = ctx.store.member(username)
    now = time.time()
    jti = secrets.token_urlsafe(24)
    claims: dict[str, Any] = {"iss": ctx.issuer, "sub": member["sub"] if member else username,
                              "aud": ctx.fhir_base, "client_id": client_id, "scope": scope, "jti": jti,
                              "iat": int(now), "exp": int(now) + ctx.access_token_ttl}
    if patient:
        claims["patient"] = patient
    ctx.store.add_access_token(jti=jti, grant_id=grant_id, client_id=client_id, scope=scope, patient=patient,
                               username=username, iat=now, exp=now + ctx.access_token_ttl)
    if ctx.variants.active(OPAQUE_ACCESS_TOKENS):
        return jti, now  # a handle: what it grants lives only in the store (opaque_access_claims)
    if ctx.variants.active(JWT_ACCESS_TOKENS):
        # RFC 9068 §2: the JWT access token profile: typ at+jwt, with client_id, iat, jti and auth_time.
        claims["auth_time"] = int(now)
        token = jwt.encode(claims, ctx.keys.active.private, algorithm="RS256",
                           headers={"kid": ctx.keys.active.kid, "typ": "at+jwt"})
        return token, now
    return ctx.keys.sign(claims), now


def _id_token(ctx: Context, client_id: str, username: str, nonce: str | None, patient: str | None) -> str:
    member = ctx.store.member(username)
    assert member is not None
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ctx.issuer, "sub": member["sub"], "aud": client_id, "iat": now,
                              "exp": now + ctx.access_token_ttl, "auth_time": now,
                              "fhirUser": f"{ctx.fhir_base}/{member['fhir_user']}"}
    if nonce:
        claims["nonce"] = nonce
    if ctx.faults.active(Fault.SUB_UNSTABLE):
        claims["sub"] = secrets.token_hex(16)
    if ctx.faults.active(Fault.ID_TOKEN_WRONG_AUD):
        claims["aud"] = ctx.fhir_base
    if ctx.faults.active(Fault.ID_TOKEN_NONCE_NOT_ECHOED):
        claims.pop("nonce", None)
    if ctx.faults.active(Fault.ID_TOKEN_EXPIRED):
        claims["exp"] = now - 600
    if ctx.faults.active(Fault.FHIRUSER_MISSING):
        claims.pop("fhirUser")
    if ctx.faults.active(Fault.FHIRUSER_OTHER_ORIGIN):
        # A plain-http origin that is not this server ($SMART_REFERENCE_FHIRUSER_ORIGIN lets a test listen there).
        elsewhere = os.environ.get("SMART_REFERENCE_FHIRUSER_ORIGIN", "http://127.0.0.1:9")
        claims["fhirUser"] = f"{elsewhere.rstrip('/')}/fhir/{member['fhir_user']}"
    if ctx.faults.active(Fault.REPRESENTATIVE_FHIRUSER_PATIENT) and patient and \
            not member["fhir_user"].startswith("Patient/"):
        claims["fhirUser"] = f"{ctx.fhir_base}/Patient/{patient}"
    if ctx.faults.active(Fault.ID_TOKEN_HS256):
        return jwt.encode(claims, hashlib.sha256(b"reference-idtoken" + ctx.origin.encode()).hexdigest(),
                          algorithm="HS256", headers={"kid": ctx.keys.active.kid})
    token = ctx.keys.sign(claims, kid=not ctx.faults.active(Fault.ID_TOKEN_NO_KID))
    if ctx.faults.active(Fault.ID_TOKEN_BAD_SIGNATURE):
        head, body, sig = token.split(".")
        flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
        token = f"{head}.{body}.{flipped}"
    return token


def _issue(ctx: Context, *, grant_id: str, client_id: str, username: str, scope: str, patient: str | None,
           nonce: str | None, refresh_token: str | None) -> JSONResponse:
    """Build a token response for a grant (new code exchange or refresh)."""
    granted = scope.split()
    token, _ = _access_token(ctx, grant_id, client_id, username, scope, patient)
    body: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": ctx.access_token_ttl,
                            "scope": scope}
    if ctx.faults.active(Fault.EXPIRES_IN_MISSING):
        del body["expires_in"]
    if ctx.faults.active(Fault.TOKEN_TYPE_NOT_BEARER):
        body["token_type"] = "JWT"
    if ctx.faults.active(Fault.TOKEN_SCOPE_MISSING):
        del body["scope"]
    if ctx.faults.active(Fault.CONTEXT_WRONG_TYPES):
        body["need_patient_banner"] = "false"
    if patient and not ctx.faults.active(Fault.PATIENT_MISSING):
        body["patient"] = patient
    if "openid" in granted and "fhirUser" in granted and not ctx.faults.active(Fault.ID_TOKEN_MISSING):
        body["id_token"] = _id_token(ctx, client_id, username, nonce, patient)
    wants_refresh = "offline_access" in granted or "online_access" in granted
    if refresh_token is None and wants_refresh and not ctx.faults.active(Fault.OFFLINE_ACCESS_NO_REFRESH_TOKEN):
        refresh_token = ctx.store.add_refresh_token(grant_id=grant_id, client_id=client_id, scope=scope,
                                                    ttl=REFRESH_TOKEN_TTL)
    if refresh_token:
        body["refresh_token"] = refresh_token
    return _token_response(ctx, body)


async def token_get(request: Request) -> Response:
    ctx = ctx_of(request)
    if ctx.faults.active(Fault.TOKEN_GET_ACCEPTED):
        return await token(request)
    response = _oauth_error(ctx, "invalid_request", "the token endpoint accepts POST only", 405)
    response.headers["Allow"] = "POST"
    return response


async def token(request: Request) -> Response:
    ctx = ctx_of(request)
    try:
        form = request.query_params if request.method == "GET" else await request.form()
    except Exception:  # malformed multipart or body: a client error, never a 500
        return _oauth_error(ctx, "invalid_request", "the body must be application/x-www-form-urlencoded")
    for name in form.keys():
        if len(form.getlist(name)) > 1:
            return _oauth_error(ctx, "invalid_request", f"{name} was sent more than once")
    grant_type = str(form.get("grant_type", ""))
    if not grant_type:
        return _oauth_error(ctx, "invalid_request", "grant_type is required")
    if grant_type == "refresh_token":
        return _refresh(ctx, request, form)
    if grant_type == "client_credentials":  # SMART Backend Services (private_key_jwt): reference/backend.py
        from smart_conformance.reference import backend
        return await backend.client_credentials(ctx, request, form)
    if grant_type == "password" and ctx.faults.active(Fault.PASSWORD_GRANT_ALLOWED):
        return _password(ctx, request, form)
    if grant_type != "authorization_code":
        return _oauth_error(ctx, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    client_id = authenticate_client(ctx, request, form)
    if client_id is None:
        return _invalid_client(ctx, "client authentication failed", request)
    if form.get("client_id") not in (None, client_id):
        return _oauth_error(ctx, "invalid_request", "client_id in the body differs from the authenticated client")
    code = str(form.get("code", ""))
    if not code:
        return _oauth_error(ctx, "invalid_request", "code is required")
    row, used_before = ctx.store.spend_code(code)
    if row is None:
        return _oauth_error(ctx, "invalid_grant", "the code is unknown")
    if used_before and not ctx.faults.active(Fault.CODE_REUSE_ALLOWED):
        if not ctx.faults.active(Fault.CODE_REUSE_KEEPS_TOKENS):
            ctx.store.revoke_grant(row["grant_id"])  # RFC 6749 §4.1.2: a replayed code revokes what it produced
        return _oauth_error(ctx, "invalid_grant", "the code was already used")
    if row["expires"] < time.time() or ctx.faults.active(Fault.CODE_EXPIRES_IMMEDIATELY):
        return _oauth_error(ctx, "invalid_grant", "the code has expired")
    if row["client_id"] != client_id and not ctx.faults.active(Fault.CODE_NOT_BOUND_TO_CLIENT):
        return _oauth_error(ctx, "invalid_grant", "the code was issued to another client")
    if form.get("redirect_uri") != row["redirect_uri"] and not ctx.faults.active(Fault.CODE_NOT_BOUND_TO_REDIRECT):
        return _oauth_error(ctx, "invalid_grant", "redirect_uri does not match the authorization request")
    problem = _pkce_problem(ctx, row, form.get("code_verifier"))
    if problem:
        return _oauth_error(ctx, "invalid_grant", problem)
    scope = row["scope"]
    if ctx.faults.active(Fault.SCOPE_WIDENED) and "patient/*.rs" not in scope.split():
        scope += " patient/*.rs"
    return _issue(ctx, grant_id=row["grant_id"], client_id=row["client_id"], username=row["username"],
                  scope=scope, patient=row["patient"], nonce=row["nonce"], refresh_token=None)


def _pkce_problem(ctx: Context, row: Any, verifier: Any) -> str | None:
    if ctx.faults.active(Fault.PKCE_VERIFIER_NOT_CHECKED):
        return None
    challenge, method = row["challenge"], row["method"]
    if challenge is None:  # only under pkce-not-required
        return "code_verifier sent but the authorization request had no code_challenge" if verifier else None
    if not isinstance(verifier, str) or not verifier:
        return "code_verifier is required"
    if not _VERIFIER.match(verifier):
        return "code_verifier must be 43-128 unreserved characters"
    if method == "plain":
        computed = verifier
    else:
        computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return None if hmac.compare_digest(computed, challenge) else "code_verifier does not match the code_challenge"


def _refresh(ctx: Context, request: Request, form: FormData) -> Response:
    presented = str(form.get("refresh_token", ""))
    row = ctx.store.refresh_token(presented) if presented else None
    unauthenticated = basic_credentials(request) is None and _post_credentials(form) is None
    if unauthenticated and ctx.faults.active(Fault.REFRESH_WITHOUT_CLIENT_AUTH) and row:
        client_id: str | None = row["client_id"]
    else:
        client_id = authenticate_client(ctx, request, form)
    if client_id is None:
        return _invalid_client(ctx, "client authentication failed", request)
    if not presented:
        return _oauth_error(ctx, "invalid_request", "refresh_token is required")
    if row is None or row["revoked"] or row["exp"] < time.time():
        return _oauth_error(ctx, "invalid_grant", "the refresh token is unknown, expired or revoked")
    if row["client_id"] != client_id and not ctx.faults.active(Fault.REFRESH_OTHER_CLIENT):
        return _oauth_error(ctx, "invalid_grant", "the refresh token was issued to another client")
    grant = ctx.store.grant(row["grant_id"])
    if grant is None or grant["revoked"]:
        return _oauth_error(ctx, "invalid_grant", "the authorization was revoked")
    original = row["scope"].split()
    scope = row["scope"]
    if form.get("scope"):
        asked = str(form.get("scope")).split()
        if ctx.faults.active(Fault.REFRESH_WIDENS_SCOPE):
            scope = " ".join(scope_rules.grantable(" ".join(asked))) or scope
        elif not scope_rules.is_subset(asked, original):
            return _oauth_error(ctx, "invalid_scope", "a refresh may narrow the scope but never widen it")
        elif not ctx.faults.active(Fault.REFRESH_IGNORES_NARROWER_SCOPE):
            scope = " ".join(asked)
    if ctx.variants.active(ROTATING_REFRESH_TOKENS):
        # RFC 9700 §4.14.2: a new refresh token with each refresh, the used one retired. It keeps the original
        # grant's scope, so a narrower access token now does not narrow what later refreshes may ask for.
        ctx.store.revoke_refresh_token(presented)
        rotated = ctx.store.add_refresh_token(grant_id=row["grant_id"], client_id=row["client_id"],
                                              scope=row["scope"], ttl=REFRESH_TOKEN_TTL)
        return _issue(ctx, grant_id=row["grant_id"], client_id=row["client_id"], username=grant["username"],
                      scope=scope, patient=grant["patient"], nonce=None, refresh_token=rotated)
    return _issue(ctx, grant_id=row["grant_id"], client_id=row["client_id"], username=grant["username"],
                  scope=scope, patient=grant["patient"], nonce=None, refresh_token=presented)


def _password(ctx: Context, request: Request, form: FormData) -> Response:
    """Only reachable under the password-grant-allowed fault: the legacy grant RFC 9700 forbids."""
    client_id = authenticate_client(ctx, request, form)
    if client_id is None:
        return _invalid_client(ctx, "client authentication failed", request)
    username = str(form.get("username", ""))
    member = ctx.store.member(username)
    if member is None or not check_secret(str(form.get("password", "")), member["password_hash"]):
        return _oauth_error(ctx, "invalid_grant", "bad member credentials")
    granted = scope_rules.grantable(str(form.get("scope", ""))) or ["launch/patient", "patient/*.read"]
    patients = json.loads(member["patients"])
    scope = " ".join(granted)
    grant_id = ctx.store.add_grant(client_id=client_id, username=username, scope=scope, patient=patients[0])
    return _issue(ctx, grant_id=grant_id, client_id=client_id, username=username, scope=scope,
                  patient=patients[0], nonce=None, refresh_token=None)


# --- introspection and revocation ----------------------------------------------------------------------------
def _json_no_store(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    response = JSONResponse(body, status_code=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


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
    form = await request.form()
    caller = authenticate_client(ctx, request, form)
    if caller is None and not ctx.faults.active(Fault.INTROSPECT_UNAUTHENTICATED):
        return _unauthenticated(ctx, request)
    presented = str(form.get("token", ""))
    if not presented:
        return _json_no_store({"error": "invalid_request", "error_description": "token is required"}, 400)
    inactive = _json_no_store({"active": False})
    ignore_revoked = ctx.faults.active(Fault.INTROSPECT_REVOKED_ACTIVE)
    claims = _decode_access(ctx, presented)
    now = time.time()
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
    form = await request.form()
    caller = authenticate_client(ctx, request, form)
    presented = str(form.get("token", ""))
    if caller is None and ctx.faults.active(Fault.REVOCATION_WITHOUT_CLIENT_AUTH):
        caller = _token_owner(ctx, presented)  # the fault: whoever holds a token may revoke it
    if caller is None:
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
        if row["client_id"] != caller:
            return _json_no_store({"error": "unauthorized_client",
                                   "error_description": "the token was issued to another client"}, 400)
        if not ctx.faults.active(Fault.REVOCATION_IGNORED):
            ctx.store.revoke_access_token(row["jti"])
        return ok
    refresh = ctx.store.refresh_token(presented)
    if refresh is None:
        return ok  # RFC 7009 §2.2: unknown or already invalid tokens are not an error
    if refresh["client_id"] != caller:
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


def _token_owner(ctx: Context, presented: str) -> str | None:
    """The client a token was issued to (used only by the revocation-without-client-auth fault)."""
    claims = _decode_access(ctx, presented) if presented else None
    if claims is not None:
        row = ctx.store.access_token(str(claims.get("jti", "")))
        return str(row["client_id"]) if row is not None else None
    refresh = ctx.store.refresh_token(presented) if presented else None
    return str(refresh["client_id"]) if refresh is not None else None
