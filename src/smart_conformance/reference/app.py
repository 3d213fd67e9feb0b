"""Starlette assembly: routes, error handlers that never leak internals, the security-header middleware."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from smart_conformance.reference import (
    auth,
    backend,
    bulk,
    discovery,
    fhir,
    idp,
    pdex,
    token_endpoint,
)
from smart_conformance.reference.context import Context, ctx_of
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.middleware import SecurityHeaders
from smart_conformance.reference.rate_limit import ApiRateLimit

FHIR_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]


async def index(request: Request) -> Response:
    """A small public map of the server (no data)."""
    ctx = ctx_of(request)
    return JSONResponse({"service": "smart-payer-conformance reference payer", "fhir_base_url": ctx.fhir_base,
                         "smart_configuration": f"{ctx.fhir_base}/.well-known/smart-configuration",
                         "issuer": ctx.issuer})


def _error_response(request: Request, status: int, detail: str) -> Response:
    ctx = ctx_of(request)
    if request.url.path.startswith("/fhir"):
        code = {404: "not-found", 405: "not-supported"}.get(status, "exception")
        return fhir.outcome(ctx, status, code, detail)
    return JSONResponse({"error": "invalid_request" if status < 500 else "server_error",
                         "error_description": detail}, status_code=status,
                        headers={"Cache-Control": "no-store"})


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = {404: "no such endpoint", 405: "method not allowed"}.get(exc.status_code, "request refused")
    response = _error_response(request, exc.status_code, detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def server_error(request: Request, exc: Exception) -> Response:
    return _error_response(request, 500, "internal error")


FHIR_API, AUTH_SERVER, BOTH, IDENTITY_PROVIDER = "fhir", "auth", "both", "idp"


def build_app(ctx: Context, serves: str = BOTH) -> Starlette:
    """The ASGI app of one listener: both halves (the default layout), or only the FHIR API or only the
    authorization server (the split-origin variant runs one listener per half, on two origins), or only the identity
    provider's sign-in page (separate-idp-origin: a listener of its own)."""
    fhir_routes = [
        Route("/fhir/.well-known/smart-configuration", discovery.smart_configuration, methods=["GET"]),
        Route("/fhir/metadata", fhir.metadata, methods=["GET"]),
        # --- Bulk Data export for backend clients (reference/bulk.py); before the catch-all FHIR route ---
        Route("/fhir/Group/{group_id}/$export", bulk.group_export, methods=["GET"]),
        Route("/fhir/Patient/$export", bulk.patient_export, methods=["GET"]),
        Route("/fhir/bulk-status/{job_id}", bulk.status, methods=["GET", "DELETE"]),
        Route("/fhir/bulk-files/{job_id}/{name}", bulk.file, methods=["GET"]),
        # --- end of bulk export ---
        # --- CMS-0057 payer APIs: Provider Access and Payer-to-Payer (reference/pdex.py) ---
        Route("/fhir/Group/$provider-member-match", pdex.provider_member_match, methods=["POST"]),
        Route("/fhir/Group/$bulk-member-match", pdex.bulk_member_match, methods=["POST"]),
        Route("/fhir/Group/{group_id}/$davinci-data-export", pdex.data_export, methods=["POST"]),
        Route("/fhir/Group/{group_id}", pdex.group_read, methods=["GET"]),
        Route("/fhir/Group", pdex.group_search, methods=["GET"]),
        Route("/fhir/Patient/$member-match", pdex.member_match, methods=["POST"]),
        # --- end of payer APIs ---
        Route("/clients/{client_id}/jwks.json", backend.client_jwks, methods=["GET"]),  # backend-jwks-url variant
        Route("/fhir", fhir.endpoint, methods=FHIR_METHODS),
        Route("/fhir/{rest:path}", fhir.endpoint, methods=FHIR_METHODS),
    ]
    auth_routes = [
        Route("/auth/.well-known/openid-configuration", discovery.openid_configuration, methods=["GET"]),
        Route("/auth/jwks", discovery.jwks, methods=["GET"]),
        Route("/auth/authorize", auth.authorize, methods=["GET", "POST"]),
        Route("/auth/login", auth.login, methods=["GET", "POST"]),
        Route("/auth/login/continue", auth.login_continue, methods=["POST"]),  # the sign-in-307 fault's next hop
        Route("/auth/login/return", auth.login_return, methods=["GET"]),  # separate-idp-origin: back from the IdP
        Route("/auth/consent", auth.consent, methods=["GET", "POST"]),
        Route("/auth/mfa", idp.mfa, methods=["GET", "POST"]),  # totp-mfa variant
        Route("/auth/prompt", idp.prompt, methods=["GET", "POST"]),  # sign-in-prompts variant
        Route("/auth/token", token_endpoint.token, methods=["POST"]),
        Route("/auth/token", token_endpoint.token_get, methods=["GET", "HEAD", "PUT", "DELETE", "PATCH"]),
        Route("/auth/introspect", auth.introspect, methods=["GET", "POST"]),  # GET: refused unless a fault
        Route("/auth/revoke", auth.revoke, methods=["GET", "POST"]),
    ]
    if serves == AUTH_SERVER:  # a separate authorization server often serves the SMART configuration itself too
        auth_routes.append(Route("/auth/.well-known/smart-configuration", discovery.smart_configuration,
                                 methods=["GET"]))
    if serves == IDENTITY_PROVIDER:
        routes = [Route("/idp/login", idp.idp_login, methods=["GET", "POST"])]
        app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders, ctx=ctx)],
                        exception_handlers={HTTPException: http_error, Exception: server_error})
        app.state.ctx = ctx
        return app
    routes = [Route("/", index, methods=["GET"]), *(fhir_routes if serves in (BOTH, FHIR_API) else []),
              *(auth_routes if serves in (BOTH, AUTH_SERVER) else [])]
    # The rate-limit gateway sits inside the security headers: its 429s carry HSTS and nosniff like every answer.
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders, ctx=ctx), Middleware(ApiRateLimit, ctx=ctx)],
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.ctx = ctx
    return app


def build_plain_app(ctx: Context, https_app: Starlette) -> ASGIApp:
    """The plain-http listener: a redirect to https without any data, or (fault) the whole server in clear text."""
    if ctx.faults.active(Fault.PLAINTEXT_HTTP_SERVED):
        return https_app

    async def to_https(request: Request) -> Response:
        target = ctx.origin + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(target, status_code=301)

    app = Starlette(routes=[Route("/{rest:path}", to_https, methods=["GET", "HEAD", "POST", "PUT", "DELETE",
                                                                    "PATCH", "OPTIONS"])])
    app.state.ctx = ctx
    return app
