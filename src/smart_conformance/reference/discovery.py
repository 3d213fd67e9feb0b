"""Public discovery documents: SMART configuration, OpenID configuration, JWKS, CapabilityStatement.

All are readable without a token and carry absolute https URLs built from the listener's origin.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from smart_conformance.reference.context import Context, ctx_of
from smart_conformance.reference.data import SUPPORTED_TYPES
from smart_conformance.reference.faults import Fault
from smart_conformance.reference.variants import (
    CLIENT_SECRET_POST_ONLY,
    INCLUDES_NOT_SUPPORTED,
    REMEMBERED_CONSENT,
    SMART_V1_DISCOVERY_ONLY,
)

CAPABILITIES = [
    "launch-standalone", "client-confidential-symmetric", "context-standalone-patient", "permission-patient",
    "permission-offline", "permission-online", "permission-v1", "permission-v2", "sso-openid-connect",
    "authorize-post",
]
CARIN_READ_TYPES = ("Patient", "Coverage", "ExplanationOfBenefit", "Organization", "Practitioner")


def scopes_supported() -> list[str]:
    resource = [f"patient/{t}.{s}" for t in (*CARIN_READ_TYPES, "RelatedPerson", "*") for s in ("rs", "read")]
    return ["openid", "fhirUser", "launch/patient", "offline_access", "online_access", *resource]


# What a SMART on FHIR v1 server lists in its CapabilityStatement's capabilities extensions (no SMART 2 capabilities:
# permission-v1/v2 and authorize-post came with SMART 2).
V1_CAPABILITIES = [
    "launch-standalone", "client-confidential-symmetric", "context-standalone-patient", "permission-patient",
    "permission-offline", "permission-online", "sso-openid-connect",
]
CAPABILITIES_EXTENSION = "http://fhir-registry.smarthealthit.org/StructureDefinition/capabilities"


def endpoints(ctx: Context, *, relative: bool = False) -> dict[str, str]:
    """The authorization server's endpoints (on its own origin in the split-origin variant)."""
    base = "" if relative else ctx.authorization_origin
    return {"authorization_endpoint": f"{base}/auth/authorize", "token_endpoint": f"{base}/auth/token",
            "introspection_endpoint": f"{base}/auth/introspect", "revocation_endpoint": f"{base}/auth/revoke",
            "jwks_uri": f"{base}/auth/jwks"}


async def smart_configuration(request: Request) -> Response:
    ctx = ctx_of(request)
    if ctx.variants.active(SMART_V1_DISCOVERY_ONLY):
        raise HTTPException(404)  # SMART v1: the CapabilityStatement's oauth-uris are the discovery
    if ctx.faults.active(Fault.SMART_CONFIG_HTML_ON_ACCEPT_HTML) and "text/html" in request.headers.get("accept", ""):
        return HTMLResponse("<!DOCTYPE html><html><body><h1>Cedar Valley Health Plan developer portal</h1>"
                            "<p>See the API documentation.</p></body></html>")
    doc: dict[str, Any] = {
        "issuer": ctx.issuer,
        **endpoints(ctx, relative=ctx.faults.active(Fault.SMART_CONFIG_RELATIVE_URLS)),
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "scopes_supported": scopes_supported(),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207: the redirect names its issuer
        "capabilities": list(CAPABILITIES),
    }
    if ctx.faults.active(Fault.SMART_CONFIG_MISSING_CAPABILITY):
        doc["capabilities"].remove("launch-standalone")
    if ctx.faults.active(Fault.PKCE_PLAIN_ADVERTISED):
        doc["code_challenge_methods_supported"] = ["S256", "plain"]
    if ctx.faults.active(Fault.GRANT_TYPES_MISSING):
        del doc["grant_types_supported"]
    if ctx.faults.active(Fault.SCOPES_SUPPORTED_MISSING):
        del doc["scopes_supported"]
    if ctx.faults.active(Fault.CAPABILITIES_AS_STRING):
        doc["capabilities"] = " ".join(doc["capabilities"])
    if ctx.faults.active(Fault.AUTHORIZATION_ENDPOINT_MISSING):
        del doc["authorization_endpoint"]
    if ctx.faults.active(Fault.SSO_WITHOUT_JWKS_URI):
        del doc["jwks_uri"]
    if ctx.faults.active(Fault.RESPONSE_TYPES_MISSING):
        del doc["response_types_supported"]
    if ctx.faults.active(Fault.IMPLICIT_RESPONSE_TYPE_ADVERTISED):
        doc["response_types_supported"] = ["code", "token", "id_token token"]
    if ctx.faults.active(Fault.REVOCATION_NOT_ADVERTISED):
        del doc["revocation_endpoint"]
    if ctx.faults.active(Fault.PERMISSION_V1_NOT_ADVERTISED):
        doc["capabilities"].remove("permission-v1")
    if ctx.variants.active(CLIENT_SECRET_POST_ONLY):
        doc["token_endpoint_auth_methods_supported"] = ["client_secret_basic", "client_secret_post"]
    if ctx.faults.active(Fault.AUTH_METHODS_POST_ONLY):
        doc["token_endpoint_auth_methods_supported"] = ["client_secret_post"]
    _advertise_backend_services(ctx, doc)
    if ctx.faults.active(Fault.SMART_CONFIG_REQUIRES_TOKEN) and not request.headers.get("authorization"):
        return JSONResponse({"error": "invalid_token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return JSONResponse(doc)


# --- backend services (reference/backend.py) -------------------------------------------------------------------
def _advertise_backend_services(ctx: Context, doc: dict[str, Any]) -> None:
    """SMART client-confidential-asymmetric §Advertising server support: the client_credentials grant, private_key_jwt
    with RS384/ES384, the capability and the system scopes (appended, whatever else changed the lists)."""
    from smart_conformance.reference.backend import REGISTERED_TYPES, SIGNING_ALGS

    if isinstance(doc.get("grant_types_supported"), list) and not ctx.faults.active(Fault.CLIENT_CREDENTIALS_NOT_ADVERTISED):
        doc["grant_types_supported"].append("client_credentials")
    if not ctx.faults.active(Fault.PRIVATE_KEY_JWT_NOT_ADVERTISED):
        doc["token_endpoint_auth_methods_supported"] = [*doc.get("token_endpoint_auth_methods_supported", []),
                                                        "private_key_jwt"]
    if not ctx.faults.active(Fault.ASSERTION_ALGS_NOT_ADVERTISED):
        doc["token_endpoint_auth_signing_alg_values_supported"] = list(SIGNING_ALGS)
    if isinstance(doc.get("capabilities"), list) and not ctx.faults.active(Fault.ASYMMETRIC_CAPABILITY_MISSING):
        doc["capabilities"].append("client-confidential-asymmetric")
    if isinstance(doc.get("scopes_supported"), list) and not ctx.faults.active(Fault.SYSTEM_SCOPES_NOT_ADVERTISED):
        doc["scopes_supported"].extend([f"system/{t}.{s}" for t in REGISTERED_TYPES for s in ("rs", "read")])


async def openid_configuration(request: Request) -> Response:
    ctx = ctx_of(request)
    links = endpoints(ctx)
    doc = {
        "issuer": ctx.issuer + "/" if ctx.faults.active(Fault.ISSUER_MISMATCH) else ctx.issuer,
        "authorization_endpoint": links["authorization_endpoint"],
        "token_endpoint": links["token_endpoint"],
        "jwks_uri": links["jwks_uri"],
        "introspection_endpoint": links["introspection_endpoint"],
        "revocation_endpoint": links["revocation_endpoint"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": (["client_secret_basic", "client_secret_post"]
                                                  if ctx.variants.active(CLIENT_SECRET_POST_ONLY)
                                                  else ["client_secret_basic"]),
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207 §3
        "scopes_supported": [s for s in scopes_supported() if not (ctx.variants.active(SMART_V1_DISCOVERY_ONLY)
                                                                    and s.endswith(".rs"))],  # v1: no v2 syntax
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
    }
    if ctx.variants.active(REMEMBERED_CONSENT):  # prompt=consent shows a remembered consent's page again
        doc["prompt_values_supported"] = ["consent"]  # OpenID Connect Prompt Create 1.0 §4.1
    if ctx.faults.active(Fault.OPENID_CONFIG_INCOMPLETE):
        del doc["subject_types_supported"]
    if ctx.faults.active(Fault.OPENID_CONFIG_NO_RS256):
        doc["id_token_signing_alg_values_supported"] = ["ES256"]
    return JSONResponse(doc)


async def jwks(request: Request) -> Response:
    ctx = ctx_of(request)
    keys = ctx.keys.jwks()
    if ctx.faults.active(Fault.JWKS_PUBLISHES_PRIVATE_KEY):  # the defect: a leftover HS256 secret published
        keys["keys"].append({"kty": "oct", "kid": "hs-1", "use": "sig", "alg": "HS256",
                             "k": secrets.token_urlsafe(32)})
    if ctx.faults.active(Fault.JWKS_MISSING_KID):
        for key in keys["keys"]:
            key.pop("kid", None)
    return JSONResponse(keys, headers={"Cache-Control": "public, max-age=300"})


_SEARCH_PARAMS: dict[str, list[tuple[str, str]]] = {
    "Patient": [("_id", "token")],
    "Coverage": [("_id", "token"), ("patient", "reference"), ("beneficiary", "reference")],
    "ExplanationOfBenefit": [("_id", "token"), ("patient", "reference")],
    "Organization": [("_id", "token")],
    "Practitioner": [("_id", "token")],
    "RelatedPerson": [("_id", "token"), ("patient", "reference")],
}


def capability_statement(ctx: Context) -> dict[str, Any]:
    """What the FHIR API supports, with the SMART oauth-uris extension (v1 discovery)."""
    from smart_conformance.reference.fhir import (
        INCLUDES,  # the FHIR module owns the include table
    )

    links = endpoints(ctx)
    token_uri = links["token_endpoint"]
    if ctx.faults.active(Fault.CAPABILITY_OAUTH_URIS_MISMATCH):
        token_uri = ctx.auth_url("/auth/oauth2/token")
    oauth = {"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", "extension": [
        {"url": "authorize", "valueUri": links["authorization_endpoint"]},
        {"url": "token", "valueUri": token_uri},
        {"url": "introspect", "valueUri": links["introspection_endpoint"]},
        {"url": "revoke", "valueUri": links["revocation_endpoint"]},
    ]}
    resources = []
    for rtype in SUPPORTED_TYPES:
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": n, "type": t} for n, t in _SEARCH_PARAMS[rtype]]
                           + [{"name": "_count", "type": "number"}],
        }
        if not ctx.variants.active(INCLUDES_NOT_SUPPORTED):
            entry["searchInclude"] = sorted(f"{src}:{param}" for src, param in INCLUDES if src == rtype)
            entry["searchRevInclude"] = sorted(f"{src}:{param}" for src, param in INCLUDES
                                               if INCLUDES[(src, param)][1] == rtype)
        if rtype == "Patient":
            entry["operation"] = [{"name": "everything",
                                   "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
                                  {"name": "export",  # Bulk Data 2.0 (reference/bulk.py), for backend clients
                                   "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}]
        resources.append(entry)
    from smart_conformance.reference import pdex  # the CMS-0057 payer API operations (Group, $member-match)

    pdex.advertise(ctx, resources)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024-05-01",
        "publisher": "smart-payer-conformance",
        "kind": "instance",
        "instantiates": ["http://hl7.org/fhir/us/carin-bb/CapabilityStatement/c4bb"],
        "software": {"name": "smart-payer-conformance reference payer"},
        "implementation": {"description": "Embedded reference payer server (synthetic data)", "url": ctx.fhir_base},
        "fhirVersion": "4.3.0" if ctx.faults.active(Fault.CAPABILITY_WRONG_FHIR_VERSION) else "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": False,
                "service": [] if ctx.faults.active(Fault.CAPABILITY_NO_SECURITY_SERVICE) else [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                         "code": "SMART-on-FHIR"}], "text": "OAuth2 using SMART-on-FHIR profile"}],
                "extension": [oauth, *([{"url": CAPABILITIES_EXTENSION, "valueCode": code} for code in V1_CAPABILITIES]
                                       if ctx.variants.active(SMART_V1_DISCOVERY_ONLY) else [])],
            },
            "resource": resources,
        }],
    }
