"""FHIR CapabilityStatement (/metadata)

FHIR R4 http.html §capabilities and SMART App Launch §Conformance: the server's CapabilityStatement is public,
declares FHIR 4.0.1 in JSON, names SMART-on-FHIR as its security service and, through the ``oauth-uris`` extension,
the same OAuth endpoints the well-known document gives (SHALL in SMART 1; kept for older clients in SMART 2).
"""

from __future__ import annotations

from typing import Any

import pytest

from smart_conformance.checks import (
    could_not_check,
    describe,
    expect,
    expectations,
    fail,
    not_applicable,
)
from smart_conformance.smart.discovery import Document
from smart_conformance.testplan import Fault, Needs, needs, proves

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/restful-security-service"
WELL_KNOWN_FOR = {"authorize": "authorization_endpoint", "token": "token_endpoint",
                  "introspect": "introspection_endpoint", "revoke": "revocation_endpoint",
                  "manage": "management_endpoint", "register": "registration_endpoint"}


def _statement(doc: Document) -> dict[str, Any]:
    if not (doc.ok and doc.json.get("resourceType") == "CapabilityStatement"):
        could_not_check(f"/metadata gave no CapabilityStatement (HTTP {doc.status})")
    return doc.json


def _security(cs: dict[str, Any]) -> dict[str, Any]:
    rest = [r for r in cs.get("rest") or [] if isinstance(r, dict) and r.get("mode") == "server"]
    return (rest[0].get("security") or {}) if rest else {}


@pytest.mark.requirement("FHIR-CAP-01")
@proves(Fault.METADATA_REQUIRES_TOKEN)
def test_metadata_readable_without_token(capability_statement: Document) -> None:
    """GET /metadata without a token returns the CapabilityStatement."""
    body = capability_statement.json if isinstance(capability_statement.json, dict) else {}
    expect(capability_statement.status == 200 and body.get("resourceType") == "CapabilityStatement",
           expected="HTTP 200 and a CapabilityStatement for an unauthenticated GET",
           actual=f"HTTP {capability_statement.status}, resourceType {body.get('resourceType')!r}",
           exchange=capability_statement.exchange)


@pytest.mark.requirement("FHIR-CAP-02")
@proves(Fault.CAPABILITY_WRONG_FHIR_VERSION)
@needs(Needs.CAPABILITY_STATEMENT)
def test_fhir_version_r4(capability_statement: Document) -> None:
    """fhirVersion is 4.0.1 (FHIR R4) and JSON is a supported format."""
    cs = _statement(capability_statement)
    formats = cs.get("format") or []
    with expectations() as check:  # the version and the formats are two findings of their own
        check.expect(cs.get("fhirVersion") == "4.0.1", expected="fhirVersion '4.0.1'",
                     actual=f"{cs.get('fhirVersion')!r}", exchange=capability_statement.exchange)
        check.expect(any(f in ("json", "application/fhir+json", "application/json") for f in formats),
                     expected="format listing json or application/fhir+json", actual=f"format = {describe(formats)}",
                     exchange=capability_statement.exchange)


@pytest.mark.requirement("FHIR-CAP-03", "FHIR-SEC-05")
@proves(Fault.CAPABILITY_NO_SECURITY_SERVICE)
@needs(Needs.CAPABILITY_STATEMENT)
def test_security_service_smart_on_fhir(capability_statement: Document) -> None:
    """rest.security.service names SMART-on-FHIR."""
    security = _security(_statement(capability_statement))
    codings = [c for s in security.get("service") or [] for c in (s.get("coding") or [])]
    expect(any(c.get("system") == SECURITY_SYSTEM and c.get("code") == "SMART-on-FHIR" for c in codings),
           expected=f"rest.security.service coding {SECURITY_SYSTEM}|SMART-on-FHIR",
           actual=f"service codings = {describe(codings)}", exchange=capability_statement.exchange)


@pytest.mark.requirement("SMART-DISC-15")
@proves(Fault.AUTHORIZATION_ENDPOINT_MISSING, Fault.CAPABILITY_OAUTH_URIS_MISMATCH, Fault.REVOCATION_NOT_ADVERTISED,
        Fault.SMART_CONFIG_RELATIVE_URLS)
@needs(Needs.CAPABILITY_STATEMENT)
def test_oauth_uris_match_well_known(capability_statement: Document, smart_configuration: Document,
                                     smart_version: str) -> None:
    """The oauth-uris extension gives the authorize and token endpoints (required in SMART v1, where it is the
    discovery) and, when the server also serves smart-configuration, the same endpoints as that document."""
    security = _security(_statement(capability_statement))
    ext = next((e for e in security.get("extension") or [] if e.get("url") == OAUTH_URIS), None)
    well_known = smart_configuration.json if smart_configuration.ok else None
    if ext is None:
        if smart_version == "2" and well_known is not None:
            not_applicable("SMART 2 deprecates the oauth-uris extension and this server omits it")
        fail(expected="rest.security.extension oauth-uris with authorize and token",
             actual="no oauth-uris extension" + ("" if well_known is not None else
                                                 f", and no SMART configuration (HTTP {smart_configuration.status})"),
             exchange=capability_statement.exchange)
    given = {e.get("url"): e.get("valueUri") for e in ext.get("extension") or []}
    if smart_version == "1" or well_known is None:
        missing = [k for k in ("authorize", "token") if not given.get(k)]
        expect(not missing, expected="oauth-uris authorize and token", actual=f"missing {missing}",
               exchange=capability_statement.exchange)
    if well_known is None:
        return  # SMART v1 discovery: nothing to compare with (the missing document is test_smart_configuration_served)
    mismatched = {k: {"metadata": v, "well-known": well_known.get(WELL_KNOWN_FOR[k])}
                  for k, v in given.items() if k in WELL_KNOWN_FOR and well_known.get(WELL_KNOWN_FOR[k]) != v}
    expect(not mismatched, expected="oauth-uris values equal to the smart-configuration endpoints",
           actual=f"differ: {describe(mismatched)}", exchange=capability_statement.exchange)
