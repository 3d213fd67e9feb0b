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


# --- SMART v1: endpoints in the CapabilityStatement ------------------------------------------------------------------
# Before the well-known document, SMART on FHIR servers published their OAuth endpoints (and, optionally, their
# capabilities) only in CapabilityStatement.rest.security; SMART 2 keeps the oauth-uris extension for older clients.

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
CAPABILITIES_EXTENSION = "http://fhir-registry.smarthealthit.org/StructureDefinition/capabilities"
WELL_KNOWN_FOR = {"authorize": "authorization_endpoint", "token": "token_endpoint",
                  "introspect": "introspection_endpoint", "revoke": "revocation_endpoint",
                  "manage": "management_endpoint", "register": "registration_endpoint"}


def metadata_url(fhir_base_url: str) -> str:
    return fhir_base_url.rstrip("/") + "/metadata"


def security_of(statement: Any) -> dict[str, Any]:
    """``rest[mode=server].security`` of a CapabilityStatement ({} when there is none)."""
    if not isinstance(statement, dict):
        return {}
    rest = [r for r in statement.get("rest") or [] if isinstance(r, dict) and r.get("mode") == "server"]
    security = rest[0].get("security") if rest else None
    return security if isinstance(security, dict) else {}


def oauth_uris(statement: Any) -> dict[str, str] | None:
    """The oauth-uris extension as {component: valueUri} (e.g. {"authorize": ..., "token": ...}); None without it."""
    ext = next((e for e in security_of(statement).get("extension") or []
                if isinstance(e, dict) and e.get("url") == OAUTH_URIS), None)
    if ext is None:
        return None
    return {e["url"]: e["valueUri"] for e in ext.get("extension") or []
            if isinstance(e, dict) and isinstance(e.get("url"), str) and isinstance(e.get("valueUri"), str)}


def statement_capabilities(statement: Any) -> list[str] | None:
    """SMART v1's capabilities extensions on rest.security (one valueCode each); None when there are none."""
    codes = [e.get("valueCode") for e in security_of(statement).get("extension") or []
             if isinstance(e, dict) and e.get("url") == CAPABILITIES_EXTENSION and isinstance(e.get("valueCode"), str)]
    return codes or None


def config_from_statement(statement: Any, statement_url: str) -> dict[str, Any] | None:
    """A SMART-configuration-shaped view of a v1 CapabilityStatement: the oauth-uris endpoints under their well-known
    names (relative URIs joined to /metadata's URL), and the capabilities extensions if any. Nothing is invented:
    fields only SMART 2 defines (issuer, grant types, PKCE methods…) stay absent. None without oauth-uris."""
    uris = oauth_uris(statement)
    if uris is None:
        return None
    config: dict[str, Any] = {WELL_KNOWN_FOR[k]: v for k, v in uris.items() if k in WELL_KNOWN_FOR}
    capabilities = statement_capabilities(statement)
    if capabilities is not None:
        config["capabilities"] = capabilities
    return resolved(config, statement_url)


WELL_KNOWN = "well-known"
CAPABILITY_STATEMENT = "capability-statement"


@dataclass(frozen=True)
class Discovery:
    """Where a SMART client found the server's endpoints: the well-known document, or (SMART v1) the
    CapabilityStatement's oauth-uris. ``config`` uses the well-known field names either way."""

    config: dict[str, Any]
    source: str  # WELL_KNOWN | CAPABILITY_STATEMENT
    document: Document  # the document the config came from (its exchange is the evidence)
    well_known: Document  # the SMART configuration fetch, whatever it gave

    @property
    def exchange(self) -> Exchange | None:
        return self.document.exchange

    def describe(self) -> str:
        if self.source == WELL_KNOWN:
            return f"SMART configuration at {self.document.url}"
        return f"oauth-uris of the CapabilityStatement at {self.document.url}"


def discover(well_known: Document, statement: Document | None) -> Discovery | None:
    """What a SMART client does: the well-known document when it is a JSON object, else the oauth-uris of the
    CapabilityStatement (SMART v1). None when neither gives endpoints."""
    if well_known.ok:
        return Discovery(resolved(well_known.json, well_known.url), WELL_KNOWN, well_known, well_known)
    if statement is not None and statement.ok:
        config = config_from_statement(statement.json, statement.url)
        if config is not None:
            return Discovery(config, CAPABILITY_STATEMENT, statement, well_known)
    return None
