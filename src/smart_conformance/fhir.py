"""Small FHIR REST helpers for checks: bearer calls through the recording client, and readers of refusals."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

from smart_conformance.http import Exchange, RecordingClient

FHIR_JSON = "application/fhir+json"

# Text that betrays the server's internals when it appears in an error body.
DISCLOSURE = re.compile(
    r"Traceback \(most recent call last\)|\bat [\w.$]+\([\w]+\.java:\d+\)|File \"[^\"]+\.py\", line \d+|"
    r"\bException in thread\b|System\.[A-Za-z]+Exception|stack ?trace|/usr/(?:local/)?lib/python|"
    r"node_modules/|\bat Object\.<anonymous>|Whitelabel Error Page|Apache Tomcat/\d|nginx/\d|Microsoft-IIS/\d|"
    r"uvicorn|gunicorn|Werkzeug/|Express\b|PHP/\d|X-Powered-By", re.IGNORECASE)


@dataclass(frozen=True)
class Reply:
    response: httpx.Response
    exchange: Exchange | None

    @property
    def status(self) -> int:
        return self.response.status_code

    def json(self) -> Any:
        try:
            return self.response.json()
        except ValueError:
            return None

    @property
    def resource_type(self) -> str | None:
        body = self.json()
        return body.get("resourceType") if isinstance(body, dict) else None


def call(http: RecordingClient, method: str, url: str, *, token: str | None = None,
         headers: dict[str, str] | None = None, **kwargs: Any) -> Reply:
    sent = {"Accept": FHIR_JSON, **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    response = http.request(method, url, headers=sent, **kwargs)
    return Reply(response, http.exchange_for(response))


def leaked_data(reply: Reply) -> str | None:
    """Describe any resource data in a refusal: a refusal must carry none."""
    body = reply.json()
    if not isinstance(body, dict):
        return None
    kind = body.get("resourceType")
    if kind == "Bundle":
        entries = [e.get("resource", {}).get("resourceType") for e in body.get("entry") or [] if isinstance(e, dict)]
        entries = [e for e in entries if e and e != "OperationOutcome"]
        return f"a Bundle with {len(entries)} resources ({', '.join(sorted(set(entries)))})" if entries else None
    if kind and kind != "OperationOutcome":
        return f"a {kind} resource"
    return None


def disclosure(reply: Reply) -> str | None:
    """The first sign of server internals (stack traces, framework banners) in an error response."""
    text = reply.response.text[:20000]
    match = DISCLOSURE.search(text)
    if match:
        start = max(match.start() - 40, 0)
        return f"body contains {text[start:match.end() + 40]!r}"
    for name in ("server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version"):
        value = reply.response.headers.get(name)
        if value and re.search(r"\d", value):
            return f"header {name}: {value}"
    return None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """A JWT with ``alg: none``: a server that accepts it accepts anyone."""
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."
