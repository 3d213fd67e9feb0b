"""Fetching the documents a SMART client discovers a server by, keeping the exchange for the evidence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from urllib.parse import urljoin

import httpx

from smart_conformance.http import Exchange, RecordingClient


@dataclass(frozen=True)
class Document:
    """A fetched JSON document: the parsed body (or None) and the recorded exchange it came from."""

    url: str
    status: int
    content_type: str
    json: Any
    parse_error: str | None
    exchange: Exchange | None
    headers: httpx.Headers

    @property
    def ok(self) -> bool:
        return self.status == 200 and isinstance(self.json, dict)


def fetch_json(http: RecordingClient, url: str, accept: str | None = "application/json",
               headers: dict[str, str] | None = None) -> Document:
    """GET a JSON document. Transport errors propagate (they mean *could not check*, not *failed*)."""
    sent = dict(headers or {})
    if accept is not None:
        sent["Accept"] = accept
    response = http.get(url, headers=sent)
    parsed: Any = None
    error: str | None = None
    try:
        parsed = response.json()
    except ValueError as exc:
        error = f"body is not JSON ({exc})"
    return Document(url=url, status=response.status_code, content_type=response.headers.get("content-type", ""),
                    json=parsed, parse_error=error, exchange=http.exchange_for(response), headers=response.headers)


def smart_configuration_url(fhir_base_url: str) -> str:
    return fhir_base_url.rstrip("/") + "/.well-known/smart-configuration"


def openid_configuration_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


URL_FIELDS = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "introspection_endpoint",
              "revocation_endpoint", "management_endpoint", "registration_endpoint")


def resolved(config: dict[str, Any], document_url: str) -> dict[str, Any]:
    """A copy with relative endpoint URLs joined to the document's URL (RFC 3986 §5), as a lenient client would."""
    out = dict(config)
    for name in URL_FIELDS:
        value = out.get(name)
        if isinstance(value, str) and value and "://" not in value:
            out[name] = urljoin(document_url, value)
    return out


def detect_smart_version(config: dict[str, Any]) -> str:
    """SMART 2 servers advertise PKCE methods, grant types or the v2 permission capabilities; v1 documents don't."""
    caps = set(config.get("capabilities") or [])
    v2_markers = {"permission-v2", "authorize-post", "permission-v1"}
    if caps & v2_markers or "code_challenge_methods_supported" in config or "grant_types_supported" in config:
        return "2"
    return "1"
