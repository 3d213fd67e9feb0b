"""OpenID Connect discovery and signing keys

SMART App Launch 2.2 §Scopes for requesting identity data and OpenID Connect Discovery 1.0 §4: an app that asks for
``openid fhirUser`` validates the id_token with keys it finds through ``{issuer}/.well-known/openid-configuration``.
The issuer must be the same string everywhere, and the key set must hold usable RSA public keys and nothing private:
no private members of any key type (RSA, EC, OKP) and no symmetric (oct) keys (Discovery §3, jwks_uri).
"""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from smart_conformance.checks import could_not_check, describe, expect, expectations
from smart_conformance.http import RecordingClient
from smart_conformance.smart.discovery import Document, fetch_json
from smart_conformance.testplan import Fault, proves

REQUIRED = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "response_types_supported",
            "subject_types_supported", "id_token_signing_alg_values_supported")
# JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2): RSA d, p, q, dp, dq, qi and oth;
# EC and OKP d. A symmetric key (kty oct, its secret in k) is never public: anyone who reads it can sign with it.
PRIVATE_MEMBERS = {"RSA": ("d", "p", "q", "dp", "dq", "qi", "oth"), "EC": ("d",), "OKP": ("d",)}
ANY_PRIVATE = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


@pytest.mark.requirement("OIDC-DISC-01", "SMART-OIDC-05")
@proves(Fault.OPENID_CONFIG_INCOMPLETE)
def test_openid_configuration_served(openid_configuration: Document) -> None:
    """{issuer}/.well-known/openid-configuration is a JSON object with every required member."""
    expect(openid_configuration.ok, expected="HTTP 200 with a JSON object",
           actual=f"HTTP {openid_configuration.status} {openid_configuration.parse_error or ''}".strip(),
           exchange=openid_configuration.exchange)
    missing = [m for m in REQUIRED if m not in openid_configuration.json]
    expect(not missing, expected=f"members {', '.join(REQUIRED)}", actual=f"missing: {', '.join(missing)}",
           exchange=openid_configuration.exchange)


@pytest.mark.requirement("SMART-OIDC-04", "OIDC-DISC-01")
@proves(Fault.OPENID_CONFIG_NO_RS256)
def test_openid_rs256_supported(openid_configuration: Document) -> None:
    """RS256 is among the id_token signing algorithms."""
    if not openid_configuration.ok:
        could_not_check(f"openid-configuration unusable (HTTP {openid_configuration.status})")
    algs = openid_configuration.json.get("id_token_signing_alg_values_supported")
    expect(isinstance(algs, list) and "RS256" in algs, expected="id_token_signing_alg_values_supported with 'RS256'",
           actual=f"id_token_signing_alg_values_supported = {describe(algs)}", exchange=openid_configuration.exchange)


@pytest.mark.requirement("OIDC-DISC-02", "SMART-DISC-09")
@proves(Fault.ISSUER_MISMATCH)
def test_issuer_identical_across_documents(openid_configuration: Document, smart_config_raw: dict[str, Any]) -> None:
    """The issuer in openid-configuration is byte-for-byte the issuer in smart-configuration."""
    if not openid_configuration.ok:
        could_not_check(f"openid-configuration unusable (HTTP {openid_configuration.status})")
    theirs, ours = openid_configuration.json.get("issuer"), smart_config_raw.get("issuer")
    expect(theirs == ours, expected=f"issuer {ours!r} (as in smart-configuration)", actual=f"issuer {theirs!r}",
           exchange=openid_configuration.exchange)


@pytest.fixture(scope="session")
def jwks(http: RecordingClient, smart_config: dict[str, Any], openid_configuration: Document) -> Document:
    uri = (openid_configuration.json or {}).get("jwks_uri") if openid_configuration.ok else None
    uri = uri or smart_config.get("jwks_uri")
    if not isinstance(uri, str):
        could_not_check("no jwks_uri in openid-configuration or smart-configuration")
    return fetch_json(http, uri, accept="application/json")


def private_material(key: dict[str, Any]) -> list[str]:
    """What in one JWK is private or secret: the private members of its key type (any known private member when the
    type is unknown), or the whole key when it is symmetric."""
    kty = key.get("kty")
    if kty == "oct":
        return ["a symmetric key (kty oct" + (", secret k)" if "k" in key else ")")]
    return [m for m in PRIVATE_MEMBERS.get(str(kty), ANY_PRIVATE) if m in key]


@pytest.mark.requirement("SMART-OIDC-03", "OIDC-05", "OIDC-DISC-03")
@proves(Fault.JWKS_MISSING_KID, Fault.JWKS_PUBLISHES_PRIVATE_KEY)
def test_jwks_has_usable_rsa_public_keys(jwks: Document) -> None:
    """The JWKS is reachable and holds bare RSA public keys for RS256, each with a kid, and nothing private: no
    private members of any key type, no symmetric keys."""
    expect(jwks.ok and isinstance(jwks.json.get("keys"), list), expected="HTTP 200 with a JSON object holding 'keys'",
           actual=f"HTTP {jwks.status} {describe(jwks.json) if jwks.json is not None else jwks.parse_error}",
           requirement="SMART-OIDC-03", exchange=jwks.exchange)
    keys = jwks.json["keys"]
    usable = []
    with expectations() as check:  # every key judged, and kids apart from key material: each finding reported
        for i, key in enumerate(keys):
            if not isinstance(key, dict):
                continue
            leaked = private_material(key)
            if leaked:
                check.fail(expected="public keys only: no private members, no symmetric keys",
                           actual=f"key {i} (kty {key.get('kty')!r}, kid {key.get('kid')!r}) publishes "
                                  f"{', '.join(leaked)}", requirement="OIDC-DISC-03", exchange=jwks.exchange)
            if key.get("kty") == "RSA" and key.get("use", "sig") == "sig" and key.get("alg", "RS256") == "RS256":
                try:
                    jwt.PyJWK(key, algorithm="RS256")
                except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
                    check.fail(expected="an importable RSA JWK", actual=f"key {i} rejected: {exc}",
                               requirement="SMART-OIDC-03", exchange=jwks.exchange)
                    continue
                usable.append(key)
        check.expect(bool(usable), expected="at least one RSA signing key usable with RS256",
                     actual=f"{len(keys)} keys, none an RSA RS256 signing key",
                     requirement="SMART-OIDC-03", exchange=jwks.exchange)
        no_kid = [i for i, k in enumerate(keys) if isinstance(k, dict) and not k.get("kid")]
        check.expect(not no_kid, expected="a kid on every key, so id_token headers can name their key",
                     actual=f"keys without kid at positions {no_kid}", requirement="OIDC-05", exchange=jwks.exchange)
