"""Headers every response gets (HSTS, nosniff), CORS, and nothing that names the server software.

A pure ASGI middleware so it also covers error responses produced below it.
"""

from __future__ import annotations

import json
from email.utils import formatdate

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smart_conformance.reference.context import Context
from smart_conformance.reference.faults import Fault

HSTS = "max-age=63072000; includeSubDomains"
PUBLIC_PATHS = ("/fhir/.well-known/smart-configuration", "/fhir/metadata", "/auth/.well-known/openid-configuration",
                "/auth/jwks", "/auth/.well-known/smart-configuration")  # the last: split-origin variant only
ALLOW_HEADERS = "Authorization, Content-Type, Accept, Prefer"


class SecurityHeaders:
    """Adds the security headers and answers CORS preflights.

    CORS policy: discovery documents allow any origin without credentials (SMART-SEC-01); everything else allows
    only ``ctx.cors_origins`` (empty by default: this reference has no browser-based clients).
    """

    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    def _cors(self, path: str, origin: str | None) -> dict[str, str]:
        if origin is None:
            return {}
        if path in PUBLIC_PATHS:
            return {"Access-Control-Allow-Origin": "*"}
        if self.ctx.faults.active(Fault.CORS_WILDCARD_CREDENTIALS):
            return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
                    "Vary": "Origin"}
        if origin in self.ctx.cors_origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {}

    def _common(self, scope: Scope) -> dict[str, str]:
        headers: dict[str, str] = {}
        if not self.ctx.faults.active(Fault.NOSNIFF_MISSING):
            headers["X-Content-Type-Options"] = "nosniff"
        if scope.get("scheme") == "https" and not self.ctx.faults.active(Fault.HSTS_MISSING):
            headers["Strict-Transport-Security"] = HSTS
        if self.ctx.clock_skew():  # uvicorn's own Date header is off then (server.py): the skewed clock's instead
            headers["Date"] = formatdate(self.ctx.now(), usegmt=True)
        if self.ctx.faults.active(Fault.SERVER_BANNER):
            headers["Server"] = "uvicorn/0.54.0 (Python 3.11)"
            headers["X-Powered-By"] = "Starlette/1.10.0"
        return headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = request_headers.get("origin")
        path: str = scope["path"]
        cors = self._cors(path, origin)
        common = self._common(scope)
        if scope["method"] == "OPTIONS" and origin is not None and "access-control-request-method" in request_headers:
            await self._preflight(send, path, cors, common)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in {**common, **cors}.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _preflight(self, send: Send, path: str, cors: dict[str, str], common: dict[str, str]) -> None:
        if cors:
            status, body = 204, b""
            headers = {**cors, "Access-Control-Allow-Methods": "GET, HEAD, POST",
                       "Access-Control-Allow-Headers": ALLOW_HEADERS, "Access-Control-Max-Age": "600"}
            media = None
        else:
            status = 403
            body = json.dumps({"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": "forbidden",
                "diagnostics": "cross-origin requests from this origin are not allowed"}]}).encode()
            headers = {}
            media = "application/fhir+json" if path.startswith("/fhir") else "application/json"
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in {**common, **headers}.items()]
        if media:
            raw.append((b"content-type", media.encode()))
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
