"""Client assertion validation: every broken assertion is refused with invalid_client

SMART App Launch 2.2 §Client Authentication: Asymmetric, Signature Verification, RFC 7523 §3 and RFC 7521 §4.2: the
server validates the one-time authentication JWT (signature by the registered key found by kid, aud = its token
endpoint, exp not passed and at most five minutes ahead, iss = sub = a known client_id, jti never seen before) and
answers any failure with invalid_client and no token. Each check changes exactly one thing of a good assertion, then
sends a good one as the positive control (it must get a token, or the check could not judge the refusal).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from smart_conformance.checks import could_not_check
from smart_conformance.smart.assertion import new_key_like, request_token
from smart_conformance.smart.backend import BackendSession, Grant, must_have_token
from smart_conformance.smart.token import basic_auth_header
from smart_conformance.testplan import Fault, proves


@pytest.fixture
def controlled(backend: BackendSession, backend_grant: Grant) -> BackendSession:
    """Negatives only run once the happy path has shown this client can get a token at all."""
    must_have_token(backend_grant, "no positive control for the negative")
    return backend


@pytest.mark.requirement("RFC7523-02")
@proves(Fault.ASSERTION_EXP_NOT_CHECKED)
def test_assertion_expired_refused(controlled: BackendSession) -> None:
    """An assertion that expired two minutes ago."""
    now = time.time()
    claims = controlled.claims(now=now - 360)  # issued six minutes ago, exp two minutes ago (beyond any leeway)
    grant = controlled.send(controlled.signer.sign(claims))
    controlled.refused(grant, what="an assertion whose exp passed two minutes ago", requirement="RFC7523-02")


@pytest.mark.requirement("ASYM-06")
@proves(Fault.ASSERTION_LIFETIME_NOT_LIMITED)
def test_assertion_lifetime_over_five_minutes_refused(controlled: BackendSession) -> None:
    """An assertion whose exp is an hour ahead (SMART: no more than five minutes; reported at SHOULD)."""
    grant = controlled.send(controlled.signer.sign(controlled.claims(lifetime=3600)))
    controlled.refused(grant, what="an assertion with exp one hour ahead", requirement="ASYM-06")


@pytest.mark.requirement("ASYM-02")
@proves(Fault.ASSERTION_JTI_REPLAY_ACCEPTED)
def test_assertion_jti_replay_refused(controlled: BackendSession) -> None:
    """The same assertion (same jti) sent twice: the first use must work, the second must not."""
    assertion = controlled.signer.assertion(controlled.token_endpoint)
    first = controlled.send(assertion)
    must_have_token(first, "the first use of the assertion was refused, so a replay cannot be judged")
    controlled.refused(controlled.send(assertion), what="a replayed assertion (jti already used)",
                       requirement="ASYM-02")


@pytest.mark.requirement("RFC7523-01")
@pytest.mark.parametrize("aud", ["wrong", "missing"])
@proves(Fault.ASSERTION_AUD_NOT_CHECKED)
def test_assertion_wrong_audience_refused(controlled: BackendSession, aud: str) -> None:
    """aud naming another endpoint (the token endpoint URL with /other appended), or no aud at all."""
    claims = controlled.claims()
    if aud == "wrong":
        claims["aud"] = controlled.token_endpoint.rstrip("/") + "/other"
    else:
        del claims["aud"]
    controlled.refused(controlled.send(controlled.signer.sign(claims)), what=f"an assertion with a {aud} aud",
                       requirement="RFC7523-01")


@pytest.mark.requirement("ASYM-03", "RFC7523-03")
@proves(Fault.ASSERTION_ISS_SUB_NOT_CHECKED)
def test_assertion_iss_sub_mismatch_refused(controlled: BackendSession) -> None:
    """iss names another (made-up) client while sub is the client_id; signed with the client's key."""
    claims = controlled.claims()
    claims["iss"] = f"{controlled.client.client_id}-other"
    controlled.refused(controlled.send(controlled.signer.sign(claims)), what="an assertion whose iss differs from sub",
                       requirement=("ASYM-03", "RFC7523-03"))


@pytest.mark.requirement("ASYM-03")
@proves(Fault.ASSERTION_KEY_BY_KID_ONLY)
def test_assertion_unknown_issuer_refused(controlled: BackendSession) -> None:
    """iss = sub = a client_id nobody registered, signed with the real client's key and kid."""
    claims = controlled.claims()
    claims["iss"] = claims["sub"] = "smart-conformance-unregistered-client"
    controlled.refused(controlled.send(controlled.signer.sign(claims)), what="an assertion from an unknown client_id",
                       requirement="ASYM-03")


@pytest.mark.requirement("ASYM-01")
@proves(Fault.ASSERTION_SIGNATURE_NOT_VERIFIED)
def test_assertion_unregistered_key_refused(controlled: BackendSession) -> None:
    """Signed by a fresh key the server never saw, under the registered kid."""
    other = new_key_like(controlled.signer.key)
    grant = controlled.send(controlled.signer.sign(controlled.claims(), key=other))
    controlled.refused(grant, what="an assertion signed with an unregistered key", requirement="ASYM-01")


@pytest.mark.requirement("ASYM-04")
@proves(Fault.ASSERTION_UNKNOWN_KID_ACCEPTED)
def test_assertion_unknown_kid_refused(controlled: BackendSession) -> None:
    """Signed by the registered key, but the header's kid names no registered key."""
    grant = controlled.send(controlled.signer.sign(controlled.claims(), kid="smart-conformance-unknown-kid"))
    controlled.refused(grant, what="an assertion whose kid matches no registered key", requirement="ASYM-04")


@pytest.mark.requirement("ASYM-08")
@proves(Fault.ASSERTION_JKU_TRUSTED)
def test_assertion_unregistered_jku_refused(controlled: BackendSession) -> None:
    """Signed by the registered key under its kid, with a jku header naming a JWK Set URL the client never
    registered: a path on the token endpoint's own origin that serves nothing (never a third-party host)."""
    parts = urlsplit(controlled.token_endpoint)
    jku = f"{parts.scheme}://{parts.netloc}/smart-conformance-unregistered/jwks.json"
    if jku == controlled.client.jwks_url:
        could_not_check(f"{jku} is the client's registered JWK Set URL")
    grant = controlled.send(controlled.signer.sign(controlled.claims(), headers={"jku": jku}))
    controlled.refused(grant, what="an assertion whose jku names a JWK Set URL the client never registered",
                       requirement="ASYM-08")


@pytest.mark.requirement("ASYM-01", "JWTBCP-01")
@proves(Fault.ASSERTION_ALG_NONE_ACCEPTED)
def test_assertion_alg_none_refused(controlled: BackendSession) -> None:
    """An unsigned assertion (alg none, empty signature)."""
    grant = controlled.send(controlled.signer.unsigned(controlled.claims()))
    controlled.refused(grant, what="an unsigned assertion (alg none)", requirement=("ASYM-01", "JWTBCP-01"))


@pytest.mark.requirement("ASYM-01", "JWTBCP-01")
@proves(Fault.ASSERTION_HS256_CONFUSION)
def test_assertion_hs256_public_key_refused(controlled: BackendSession) -> None:
    """Algorithm confusion: HS256 with the client's public key (PEM) as the HMAC secret."""
    grant = controlled.send(controlled.signer.hs256_with_public_key(controlled.claims()))
    controlled.refused(grant, what="an HS256 assertion keyed with the public key",
                       requirement=("ASYM-01", "JWTBCP-01"))


@pytest.mark.requirement("ASYM-01")
@proves(Fault.ASSERTION_SIGNATURE_NOT_VERIFIED)
def test_assertion_tampered_payload_refused(controlled: BackendSession) -> None:
    """A correctly signed assertion whose payload was changed afterwards (a new jti, so it is not a replay)."""
    claims = controlled.claims()
    changed = controlled.claims()
    grant = controlled.send(controlled.signer.tampered(claims, {"jti": changed["jti"]}))
    controlled.refused(grant, what="an assertion whose payload was altered after signing", requirement="ASYM-01")


@pytest.mark.requirement("RFC7523-04")
@proves(Fault.ASSERTION_TYPE_NOT_CHECKED)
def test_assertion_wrong_type_refused(controlled: BackendSession) -> None:
    """A good assertion sent with client_assertion_type = the SAML 2.0 bearer type."""
    grant = controlled.send(controlled.signer.assertion(controlled.token_endpoint),
                            assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
    controlled.refused(grant, what="an assertion under a wrong client_assertion_type", requirement="RFC7523-04",
                       errors=("invalid_client", "invalid_request"), error_requirement="RFC7521-01")


@pytest.mark.requirement("ASYM-07")
@proves(Fault.KEY_CLIENT_SECRET_ACCEPTED)
def test_client_secret_refused_for_key_client(controlled: BackendSession) -> None:
    """The backend client's id with a made-up client secret (HTTP Basic), no assertion."""
    secret = "smart-conformance-made-up-secret"
    response = request_token(controlled.http, controlled.token_endpoint,
                             {"grant_type": "client_credentials", "scope": controlled.scopes},
                             {"Authorization": basic_auth_header(controlled.client.client_id, secret)})
    controlled.refused(Grant(response, None), what="a client secret for a client registered with keys only",
                       requirement="ASYM-07")
