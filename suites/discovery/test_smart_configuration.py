"""SMART configuration (/.well-known/smart-configuration)

SMART App Launch 2.2 §Conformance: a server that protects FHIR with SMART publishes a JSON document at
``{fhir base}/.well-known/smart-configuration`` telling apps where to authorize, which tokens it issues and which
capabilities it really supports. A payer's Patient Access API is found by apps through this document alone.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from smart_conformance import refusals
from smart_conformance.checks import (
    could_not_check,
    describe,
    expect,
    expectations,
    fail,
    not_applicable,
)
from smart_conformance.config import Target
from smart_conformance.http import RecordingClient
from smart_conformance.plugin import declares_v1
from smart_conformance.smart.discovery import (
    CAPABILITY_STATEMENT,
    Discovery,
    Document,
    fetch_json,
    metadata_url,
    oauth_uris,
)
from smart_conformance.testplan import Fault, Needs, needs, proves

ENDPOINT_FIELDS = ("authorization_endpoint", "token_endpoint", "introspection_endpoint", "revocation_endpoint",
                   "management_endpoint", "registration_endpoint", "jwks_uri", "issuer")

# What this harness's client persona (a payer member's standalone confidential app) needs from the server.
STANDALONE_CONFIDENTIAL_CAPABILITIES = ("launch-standalone", "client-confidential-symmetric",
                                        "context-standalone-patient", "permission-patient", "permission-offline",
                                        "sso-openid-connect")

CARIN_RESOURCES = ("Patient", "Coverage", "ExplanationOfBenefit", "Organization", "Practitioner")


def _v1_endpoints(http: RecordingClient, target: Target) -> str:
    """What the CapabilityStatement offers instead (SMART v1 discovery), for the finding's text."""
    statement = fetch_json(http, metadata_url(target.fhir_base_url), accept="application/fhir+json")
    uris = oauth_uris(statement.json) if statement.ok else None
    if not uris:
        return "the CapabilityStatement has no oauth-uris extension either"
    return f"the CapabilityStatement's oauth-uris give {describe(uris)} (SMART v1 discovery)"


@pytest.mark.requirement("SMART-DISC-01", "CARIN-SEC-02")
@proves(Fault.SMART_CONFIG_REQUIRES_TOKEN)
def test_smart_configuration_served(smart_configuration: Document, http: RecordingClient, target: Target) -> None:
    """The well-known SMART configuration is served as a JSON object without authentication.

    SMART App Launch (1.0.0 and 2.x) makes it a SHALL. A server that publishes its endpoints only in the
    CapabilityStatement (the SMART on FHIR v1 discovery that came before it) is judged by it only when the target file
    does not declare ``smart_version: "1"``; every other check then runs from the oauth-uris."""
    if smart_configuration.status != 200 and declares_v1(target):
        not_applicable(f"the target declares SMART v1 (smart_version: \"1\"): no SMART configuration at "
                       f"{smart_configuration.url} (HTTP {smart_configuration.status}), and "
                       f"{_v1_endpoints(http, target)}; the well-known document is SMART App Launch's requirement, "
                       "judged for targets that do not declare v1")
    if smart_configuration.status != 200:
        fail(expected=f"HTTP 200 and a JSON object for an unauthenticated GET of {smart_configuration.url}",
             actual=f"HTTP {smart_configuration.status}; {_v1_endpoints(http, target)}. A SMART v1-only server is "
                    "judged as such with smart_version: \"1\" in the target file",
             exchange=smart_configuration.exchange)
    expect(isinstance(smart_configuration.json, dict), expected="a JSON object",
           actual=smart_configuration.parse_error or f"JSON {type(smart_configuration.json).__name__}",
           exchange=smart_configuration.exchange)


@pytest.mark.requirement("SMART-DISC-02")
@pytest.mark.parametrize("accept", [None, "*/*", "application/fhir+json", "text/html"],
                         ids=["no-accept", "any", "fhir-json", "text-html"])
@proves(Fault.SMART_CONFIG_HTML_ON_ACCEPT_HTML)
def test_smart_configuration_json_whatever_accept(http: RecordingClient, smart_configuration: Document,
                                                  smart_config_raw: dict[str, Any], smart_version: str,
                                                  accept: str | None) -> None:
    """The document is JSON (Content-Type application/json) whatever Accept header the client sends."""
    if smart_version == "1":
        not_applicable("SMART v1 does not require JSON regardless of the Accept header")
    doc = fetch_json(http, smart_configuration.url, accept=accept)
    media = doc.content_type.split(";")[0].strip().lower()
    expect(doc.status == 200 and media == "application/json" and isinstance(doc.json, dict),
           expected=f"HTTP 200, Content-Type application/json and a JSON object for Accept: {accept or '(none)'}",
           actual=f"HTTP {doc.status}, Content-Type {doc.content_type or '(none)'}"
                  f"{', ' + doc.parse_error if doc.parse_error else ''}", exchange=doc.exchange)


def _urls(config: dict[str, Any]) -> dict[str, Any]:
    found = {name: config[name] for name in ENDPOINT_FIELDS if name in config}
    for i, endpoint in enumerate(config.get("associated_endpoints") or []):
        if isinstance(endpoint, dict) and "url" in endpoint:
            found[f"associated_endpoints[{i}].url"] = endpoint["url"]
    return found


@pytest.mark.requirement("SMART-DISC-03")
@proves(Fault.SMART_CONFIG_RELATIVE_URLS)
def test_smart_configuration_urls_absolute_https(smart_configuration: Document, smart_config_raw: dict[str, Any]) -> None:
    """Every URL in the document is absolute and uses https."""
    bad = {}
    for name, value in _urls(smart_config_raw).items():
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme != "https" or not parts.netloc:
            bad[name] = value
    expect(not bad, expected="absolute https:// URLs for every endpoint, issuer and jwks_uri",
           actual=f"not absolute https: {describe(bad)}", exchange=smart_configuration.exchange)


@pytest.mark.requirement("SMART-DISC-04")
@proves(Fault.CAPABILITIES_AS_STRING)
def test_capabilities_is_array_of_strings(smart_configuration: Document, smart_config_raw: dict[str, Any]) -> None:
    """capabilities is present and is an array of strings."""
    caps = smart_config_raw.get("capabilities")
    expect(isinstance(caps, list) and all(isinstance(c, str) for c in caps),
           expected="capabilities: an array of strings", actual=f"capabilities = {describe(caps)}",
           exchange=smart_configuration.exchange)


@pytest.mark.requirement("SMART-DISC-05")
@proves(Fault.SMART_CONFIG_RELATIVE_URLS)
def test_token_endpoint_advertised_and_answers(smart_discovery: Discovery, http: RecordingClient) -> None:
    """token_endpoint is advertised (SMART v1: the oauth-uris token), and an empty POST there gets an OAuth error,
    not a missing page."""
    if smart_discovery.source == CAPABILITY_STATEMENT:
        name, url = "oauth-uris token", (oauth_uris(smart_discovery.document.json) or {}).get("token")
    else:
        name, url = "token_endpoint", smart_discovery.document.json.get("token_endpoint")  # as served, not resolved
    expect(isinstance(url, str) and url.startswith("https://"), expected=f"{name}: an https URL",
           actual=f"{name} = {describe(url)} (from the {smart_discovery.describe()})",
           exchange=smart_discovery.exchange)
    response = http.post(url, data={})
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        pass
    expect(400 <= response.status_code < 500 and response.status_code not in (404, 405, 410)
           and isinstance(body, dict) and isinstance(body.get("error"), str),
           expected="a JSON OAuth error for a POST without parameters (the endpoint is there and speaks OAuth)",
           actual=f"HTTP {response.status_code} {describe(body if body is not None else response.text[:200])}",
           exchange=http.exchange_for(response))
    refusals.note_format(refusals.record(http, response, EMPTY_POST), "an empty POST to the token endpoint")


# RFC 6749 §5.2 for a request without grant_type (or without client authentication, if that is checked first)
EMPTY_POST = refusals.Shape(refusals.Family.TOKEN, ("invalid_request", "unsupported_grant_type", "invalid_client"),
                            (400, 401))


@pytest.mark.requirement("SMART-DISC-06", "CARIN-SEC-02")
@proves(Fault.AUTHORIZATION_ENDPOINT_MISSING)
@needs(Needs.SMART_CONFIGURATION)
def test_authorization_endpoint_advertised(smart_discovery: Discovery) -> None:
    """authorization_endpoint is advertised (required with launch-standalone; SMART v1: the oauth-uris authorize)."""
    config = smart_discovery.config
    if "capabilities" not in config and smart_discovery.source == CAPABILITY_STATEMENT:
        could_not_check(f"no capabilities to judge by: the {smart_discovery.describe()} lists none and there is no "
                        "SMART configuration")
    caps = config.get("capabilities") or []
    if not {"launch-standalone", "launch-ehr"} & set(caps if isinstance(caps, list) else []):
        not_applicable(f"neither launch-standalone nor launch-ehr is advertised (in the {smart_discovery.describe()})")
    url = config.get("authorization_endpoint")
    expect(isinstance(url, str) and bool(url), expected="authorization_endpoint: a URL",
           actual=f"authorization_endpoint = {describe(url)} (from the {smart_discovery.describe()})",
           exchange=smart_discovery.exchange)


@pytest.mark.requirement("SMART-DISC-07")
@proves(Fault.GRANT_TYPES_MISSING)
def test_grant_types_supported(smart_configuration: Document, smart_config_raw: dict[str, Any], smart_version: str) -> None:
    """grant_types_supported lists authorization_code (SMART 2)."""
    if smart_version == "1":
        not_applicable("grant_types_supported is required from SMART 2.0")
    grants = smart_config_raw.get("grant_types_supported")
    expect(isinstance(grants, list) and "authorization_code" in grants,
           expected="grant_types_supported: an array containing 'authorization_code'",
           actual=f"grant_types_supported = {describe(grants)}", exchange=smart_configuration.exchange)


@pytest.mark.requirement("SMART-DISC-08", "SMART-PKCE-01", "SMART-PKCE-02")
@proves(Fault.PKCE_PLAIN_ADVERTISED)
def test_pkce_s256_only(smart_configuration: Document, smart_config_raw: dict[str, Any], smart_version: str) -> None:
    """code_challenge_methods_supported lists S256 and not plain (two findings of their own when both are wrong)."""
    if smart_version == "1":
        not_applicable("PKCE advertisement is required from SMART 2.0")
    methods = smart_config_raw.get("code_challenge_methods_supported")
    listed = methods if isinstance(methods, list) else []
    with expectations() as check:
        check.expect(isinstance(methods, list) and "S256" in methods,
                     expected="code_challenge_methods_supported containing 'S256'",
                     actual=f"code_challenge_methods_supported = {describe(methods)}",
                     requirement=("SMART-DISC-08", "SMART-PKCE-01"), exchange=smart_configuration.exchange)
        check.expect("plain" not in listed, expected="'plain' absent from code_challenge_methods_supported",
                     actual=f"code_challenge_methods_supported = {describe(methods)}",
                     requirement=("SMART-DISC-08", "SMART-PKCE-02"), exchange=smart_configuration.exchange)


@pytest.mark.requirement("SMART-DISC-09")
@proves(Fault.SSO_WITHOUT_JWKS_URI)
def test_openid_fields_when_sso(smart_configuration: Document, smart_config_raw: dict[str, Any]) -> None:
    """With sso-openid-connect, issuer and jwks_uri are advertised."""
    if "sso-openid-connect" not in (smart_config_raw.get("capabilities") or []):
        not_applicable("sso-openid-connect is not advertised")
    missing = [f for f in ("issuer", "jwks_uri") if not isinstance(smart_config_raw.get(f), str) or not smart_config_raw[f]]
    expect(not missing, expected="issuer and jwks_uri (strings) alongside sso-openid-connect",
           actual=f"missing or empty: {', '.join(missing)}", exchange=smart_configuration.exchange)


@pytest.mark.requirement("SMART-DISC-11", "CARIN-SEC-02")
@proves(Fault.SCOPES_SUPPORTED_MISSING)
def test_scopes_supported_listed(smart_configuration: Document, smart_config_raw: dict[str, Any]) -> None:
    """scopes_supported is a non-empty array of scope strings."""
    scopes = smart_config_raw.get("scopes_supported")
    expect(isinstance(scopes, list) and bool(scopes) and all(isinstance(s, str) and s and " " not in s for s in scopes),
           expected="scopes_supported: a non-empty array of single scope strings",
           actual=f"scopes_supported = {describe(scopes)}", requirement=("SMART-DISC-11", "CARIN-SEC-02"),
           exchange=smart_configuration.exchange)


def _grants_read(scopes: set[str], context: str, resource: str) -> bool:
    wanted = {f"{context}/{resource}.read", f"{context}/*.read", f"{context}/{resource}.*", f"{context}/*.*"}
    for scope in scopes:
        if scope in wanted:
            return True
        if scope.startswith((f"{context}/{resource}.", f"{context}/*.")):
            suffix = scope.split(".", 1)[1].split("?", 1)[0]
            if suffix and set(suffix) <= set("cruds") and "r" in suffix and "s" in suffix:
                return True
    return False


@pytest.mark.requirement("CARIN-SEC-05")
@proves(Fault.SCOPES_SUPPORTED_MISSING)
def test_carin_scopes_advertised(smart_configuration: Document, smart_config_raw: dict[str, Any]) -> None:
    """The scopes CARIN Blue Button requires are advertised (openid, fhirUser, launch/patient, patient read scopes)."""
    scopes = set(smart_config_raw.get("scopes_supported") or [])
    missing = [s for s in ("openid", "fhirUser", "launch/patient") if s not in scopes]
    missing += [f"patient/{r}.read (or .rs)" for r in CARIN_RESOURCES if not _grants_read(scopes, "patient", r)]
    expect(not missing, expected="scopes_supported covering openid, fhirUser, launch/patient and patient-level read "
                                 f"of {', '.join(CARIN_RESOURCES)}",
           actual=f"not advertised: {', '.join(missing)}", exchange=smart_configuration.exchange)


@pytest.mark.requirement("SMART-DISC-12", "OAUTHBCP-06")
@proves(Fault.RESPONSE_TYPES_MISSING, Fault.IMPLICIT_RESPONSE_TYPE_ADVERTISED)
def test_response_types_supported(smart_configuration: Document, smart_config_raw: dict[str, Any]) -> None:
    """response_types_supported lists 'code', and no response type that puts an access token in the redirect
    (RFC 9700 §2.1.2: token, id_token token and the hybrid types with token invite the implicit grant)."""
    types = smart_config_raw.get("response_types_supported")
    with expectations() as check:
        check.expect(isinstance(types, list) and "code" in types, expected="response_types_supported containing "
                     "'code'", actual=f"response_types_supported = {describe(types)}", requirement="SMART-DISC-12",
                     exchange=smart_configuration.exchange)
        bearing = [t for t in types if isinstance(t, str) and "token" in t.split()] if isinstance(types, list) else []
        check.expect(not bearing, expected="no response type issuing an access token in the authorization response",
                     actual=f"response_types_supported lists {', '.join(repr(t) for t in bearing)}",
                     requirement="OAUTHBCP-06", exchange=smart_configuration.exchange)


@pytest.mark.requirement("SMART-DISC-14", "SMART-INTRO-01")
@proves(Fault.REVOCATION_NOT_ADVERTISED)
def test_introspection_and_revocation_advertised(smart_discovery: Discovery) -> None:
    """introspection_endpoint and revocation_endpoint are advertised (SMART v1: oauth-uris introspect and revoke)."""
    missing = [f for f in ("introspection_endpoint", "revocation_endpoint") if not smart_discovery.config.get(f)]
    expect(not missing, expected="introspection_endpoint and revocation_endpoint",
           actual=f"not advertised in the {smart_discovery.describe()}: {', '.join(missing)}",
           exchange=smart_discovery.exchange)


@pytest.mark.requirement("CARIN-SEC-04", "SMART-CAP-01")
@proves(Fault.SMART_CONFIG_MISSING_CAPABILITY)
@needs(Needs.SMART_CONFIGURATION)
def test_payer_standalone_capabilities(smart_discovery: Discovery) -> None:
    """The capabilities a payer member's standalone confidential app relies on are all advertised (SMART v1: in the
    CapabilityStatement's capabilities extensions)."""
    config = smart_discovery.config
    if "capabilities" not in config:
        could_not_check(f"no capabilities to judge: the {smart_discovery.describe()} lists none (SMART v1's "
                        "capabilities extension) and there is no SMART configuration")
    caps = config.get("capabilities") or []
    missing = [c for c in STANDALONE_CONFIDENTIAL_CAPABILITIES if c not in caps]
    expect(not missing, expected=f"capabilities including {', '.join(STANDALONE_CONFIDENTIAL_CAPABILITIES)}",
           actual=f"missing: {', '.join(missing)}", requirement=("CARIN-SEC-04", "SMART-CAP-01"),
           exchange=smart_discovery.exchange)


@pytest.mark.requirement("SMART-SCOPE-01")
@proves(Fault.PERMISSION_V1_NOT_ADVERTISED)
def test_v1_scopes_accepted_on_v2(smart_configuration: Document, smart_config_raw: dict[str, Any],
                                  smart_version: str) -> None:
    """A SMART 2 server advertises permission-v1, so CARIN's v1-syntax scopes keep working."""
    if smart_version == "1":
        not_applicable("the target is a SMART v1 server")
    caps = smart_config_raw.get("capabilities") or []
    expect("permission-v1" in caps, expected="'permission-v1' in capabilities of a SMART 2 server",
           actual=f"capabilities = {describe(caps)}", exchange=smart_configuration.exchange)


@pytest.mark.requirement("SMART-DISC-10", "SMART-TOKEN-01")
@proves(Fault.AUTH_METHODS_POST_ONLY)
def test_client_secret_basic_advertised(smart_configuration: Document, smart_config_raw: dict[str, Any]) -> None:
    """With client-confidential-symmetric, token_endpoint_auth_methods_supported (if given) lists client_secret_basic."""
    caps = smart_config_raw.get("capabilities") or []
    if "client-confidential-symmetric" not in caps:
        not_applicable("client-confidential-symmetric is not advertised")
    methods = smart_config_raw.get("token_endpoint_auth_methods_supported",
                               smart_config_raw.get("token_endpoint_auth_methods"))
    if methods is None:
        not_applicable("token_endpoint_auth_methods_supported is not given (it is optional)")
    expect(isinstance(methods, list) and "client_secret_basic" in methods,
           expected="token_endpoint_auth_methods_supported containing 'client_secret_basic'",
           actual=f"token_endpoint_auth_methods_supported = {describe(methods)}",
           requirement="SMART-TOKEN-01", exchange=smart_configuration.exchange)
