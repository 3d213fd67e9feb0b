"""Headers every response gets (HSTS, nosniff), CORS, and nothing that names the server software.

A pure ASGI middleware so it also covers error responses produced below it.
"""

from __future__ import annotations

import json
import re
from email.utils import formatdate
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smart_conformance.reference.context import FORWARDED_ORIGIN, Context
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.variants import CORS_OWN_ORIGIN_CREDENTIALS

HSTS = "max-age=63072000; includeSubDomains"
PUBLIC_PATHS = ("/fhir/.well-known/smart-configuration", "/fhir/metadata", "/auth/.well-known/openid-configuration",
                "/auth/jwks", "/auth/.well-known/smart-configuration")  # the last: split-origin variant only
ALLOW_HEADERS = "Authorization, Content-Type, Accept, Prefer"


def _loosely_ours(origin: str, ctx: Context) -> bool:
    """The defect of the cors-origin-loose-match fault: 'null' trusted, and any origin naming our host somewhere."""
    host = urlsplit(ctx.origin).hostname or ""
    return origin == "null" or (bool(host) and host in origin)


def _forwarded_origin(headers: dict[str, str]) -> str | None:
    """The origin X-Forwarded-Host/-Proto or Forwarded (RFC 7239) name, as a proxy-trusting backend reads them."""
    match = re.search(r"(?:^|[;,\s])host=\"?([^;,\"\s]+)", headers.get("forwarded", ""), re.IGNORECASE)
    host = headers.get("x-forwarded-host", "").split(",")[0].strip() or (match.group(1) if match else "")
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip() or "https"
    return f"{proto}://{host}" if host else None


class SecurityHeaders:
    """Adds the security headers and answers CORS preflights.

    CORS policy: discovery documents allow any origin without credentials (SMART-SEC-01); everything else allows
    only ``ctx.cors_origins`` (empty by default: this reference has no browser-based clients), and under the
    cors-own-origin-credentials variant its own origins, exactly, with credentials.
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
        if self.ctx.faults.active(Fault.CORS_ORIGIN_LOOSE_MATCH) and _loosely_ours(origin, self.ctx):
            return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
                    "Vary": "Origin"}
        own = {self.ctx.origin, self.ctx.authorization_origin}
        if self.ctx.variants.active(CORS_OWN_ORIGIN_CREDENTIALS) and origin in own:  # a member portal on our origin
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

        forwarded = _forwarded_origin(request_headers) if self.ctx.faults.active(Fault.FORWARDED_HOST_TRUSTED) else None
        reset = FORWARDED_ORIGIN.set(forwarded)  # the defect, when set: every caller trusted as the front proxy
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            FORWARDED_ORIGIN.reset(reset)

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
