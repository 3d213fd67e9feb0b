"""The token endpoint: the authorization-code exchange, refresh (and, only under a fault, the password grant).

Client authentication is reference/client_auth.py; ``grant_type=client_credentials`` (SMART Backend Services) is
dispatched to reference/backend.py. Errors follow RFC 6749 §5.2: invalid_client is 401 (with a Basic challenge when
the client tried the Authorization header), everything else 400, always with Cache-Control: no-store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
import traceback
from typing import Any

import jwt
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from smart_conformance.reference import scopes as scope_rules
from smart_conformance.reference.client_auth import (
    authenticate_client,
    basic_credentials,
    post_credentials,
)
from smart_conformance.reference.context import (
    REFRESH_TOKEN_TTL,
    Context,
    ctx_of,
)
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.store import check_secret
from smart_conformance.reference.variants import (
    JWT_ACCESS_TOKENS,
    OPAQUE_ACCESS_TOKENS,
    ROTATING_REFRESH_TOKENS,
    TOKEN_401_WITHOUT_WWW_AUTHENTICATE,
)

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


# --- responses ------------------------------------------------------------------------------------------
_NONSTANDARD = {"invalid_grant": "invalid_code"}  # as a real server was seen to word them


def _token_response(ctx: Context, body: dict[str, Any], status: int = 200,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    if status >= 400 and "error" in body and ctx.faults.active(Fault.TOKEN_ERRORS_NONSTANDARD):
        body = {**body, "error": _NONSTANDARD.get(body["error"], "unauthorized_client")}
        status, headers = 403, None
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


def _access_token(ctx: Context, grant_id: str, client_id: str, username: str, scope: str,
                  patient: str | None) -> tuple[str, float]:
    member = ctx.store.member(username)
    now = ctx.now()
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
    now = int(ctx.now())
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
    except Exception:  # noqa: BLE001  (malformed multipart or body: a client error, never a 500)
        return _oauth_error(ctx, "invalid_request", "the body must be application/x-www-form-urlencoded")
    if ctx.faults.active(Fault.TOKEN_ERROR_STACK_TRACE) and any(len(str(v)) > 4096 for v in form.values()):
        try:  # the defect: an unchecked length reaches a fixed-size column, and the crash is shown as is
            raise ValueError("value too long for VARCHAR(4096) column 'token_requests.param'")
        except ValueError:
            return PlainTextResponse(traceback.format_exc(), status_code=500)
    for name in form:
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
    unauthenticated = basic_credentials(request) is None and post_credentials(form) is None
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
        if not ctx.faults.active(Fault.ROTATED_REFRESH_TOKEN_REUSABLE):  # the defect: the old one lives on
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


