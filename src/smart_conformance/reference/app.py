"""Starlette assembly: routes, error handlers that never leak internals, the security-header middleware."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from smart_conformance.reference import auth, discovery, fhir
from smart_conformance.reference.context import Context, ctx_of
from smart_conformance.reference.middleware import SecurityHeaders

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


def build_app(ctx: Context) -> Starlette:
    routes = [
        Route("/", index, methods=["GET"]),
        Route("/fhir/.well-known/smart-configuration", discovery.smart_configuration, methods=["GET"]),
        Route("/fhir/metadata", fhir.metadata, methods=["GET"]),
        Route("/fhir", fhir.endpoint, methods=FHIR_METHODS),
        Route("/fhir/{rest:path}", fhir.endpoint, methods=FHIR_METHODS),
        Route("/auth/.well-known/openid-configuration", discovery.openid_configuration, methods=["GET"]),
        Route("/auth/jwks", discovery.jwks, methods=["GET"]),
        Route("/auth/authorize", auth.authorize, methods=["GET", "POST"]),
        Route("/auth/login", auth.login, methods=["GET", "POST"]),
        Route("/auth/consent", auth.consent, methods=["GET", "POST"]),
        Route("/auth/token", auth.token, methods=["POST"]),
        Route("/auth/token", auth.token_get, methods=["GET", "HEAD", "PUT", "DELETE", "PATCH"]),
        Route("/auth/introspect", auth.introspect, methods=["POST"]),
        Route("/auth/revoke", auth.revoke, methods=["POST"]),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders, ctx=ctx)],
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.ctx = ctx
    return app


def build_plain_app(ctx: Context, https_app: Starlette) -> ASGIApp:
    """The plain-http listener: a redirect to https without any data, or (fault) the whole server in clear text."""
    if ctx.faults.active("plaintext-http-served"):
        return https_app

    async def to_https(request: Request) -> Response:
        target = ctx.origin + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(target, status_code=301)

    app = Starlette(routes=[Route("/{rest:path}", to_https, methods=["GET", "HEAD", "POST", "PUT", "DELETE",
                                                                    "PATCH", "OPTIONS"])])
    app.state.ctx = ctx
    return app
