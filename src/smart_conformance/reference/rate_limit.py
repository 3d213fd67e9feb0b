"""The api-rate-limit variant: a gateway in front of the FHIR API and the token, introspection and revocation endpoints
that answers every :data:`EVERY`-th request carrying credentials with 429 Too Many Requests and ``Retry-After: 1``.

The gateway answers before the server sees the request, as a real one does (RFC 6585 §4: the request was not
processed), so a one-time code or a rotating refresh token sent in a limited request is still unspent. One count for
the whole server, over every listener: which request is limited depends on what ran before, never on what it is, so
a client that waits the answer out and sends the same request again gets the same verdicts in any order.
"""

from __future__ import annotations

import json
import threading

from starlette.types import ASGIApp, Receive, Scope, Send

from smart_conformance.reference.context import Context
from smart_conformance.reference.middleware import PUBLIC_PATHS
from smart_conformance.reference.variants import API_RATE_LIMIT

EVERY = 20  # a small share (5 %): a whole run meets about 45 of them, each waited out for a second
RETRY_AFTER_S = 1
TOKEN_FAMILY = ("/auth/token", "/auth/introspect", "/auth/revoke")

_lock = threading.Lock()


def _credentialed(scope: Scope) -> bool:
    """A request a per-client limit applies to: an API call with a token, or a POST to the token family (each
    carries the client's authentication, or is refused for the lack of it). Discovery documents are public."""
    path: str = scope["path"]
    if path in TOKEN_FAMILY:
        return scope["method"] == "POST"
    if not (path == "/fhir" or path.startswith("/fhir/")) or path in PUBLIC_PATHS:
        return False
    return any(name.lower() == b"authorization" for name, _ in scope["headers"])


class ApiRateLimit:
    """ASGI middleware: with the variant on, every EVERY-th credentialed request is a 429 with Retry-After."""

    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    def _limited(self, scope: Scope) -> bool:
        if scope["type"] != "http" or not self.ctx.variants.active(API_RATE_LIMIT) or not _credentialed(scope):
            return False
        with _lock:
            self.ctx.rate_limit_count += 1
            return self.ctx.rate_limit_count % EVERY == 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._limited(scope):
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith("/fhir"):
            media = "application/fhir+json"
            body = {"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": "throttled",
                "diagnostics": f"too many requests: retry after {RETRY_AFTER_S} s"}]}
        else:
            media, body = "application/json", {"error": "too_many_requests",
                                               "error_description": f"retry after {RETRY_AFTER_S} s"}
        content = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", media.encode()), (b"content-length", str(len(content)).encode()),
            (b"retry-after", str(RETRY_AFTER_S).encode()), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": content})
