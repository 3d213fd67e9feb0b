"""The id_token: who signed in, provably

SMART App Launch 2.2 §Scopes for requesting identity data, OpenID Connect Core §2 and §3.1.3.7: when ``openid
fhirUser`` is granted the token response carries an id_token signed with RS256 by a key named (kid) in the JWKS found
through ``{iss}/.well-known/openid-configuration``; iss, aud, exp, iat and nonce are as the app expects; fhirUser
points at the member's own FHIR resource and sub identifies the member stably.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from smart_conformance.checks import (
    could_not_check,
    describe,
    expect,
    expectations,
    fail,
    not_applicable,
)
from smart_conformance.config import Target
from smart_conformance.fhir import Reply, call
from smart_conformance.http import Exchange, RecordingClient
from smart_conformance.launcher import Launcher
from smart_conformance.oauth import scope_set
from smart_conformance.smart.idtoken import (
    IdTokenProblem,
    MalformedJwt,
    decode_unverified,
    fetch_jwks,
    fetch_openid_configuration,
    fhir_user_reference,
    verify_signature,
)
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, Needs, needs, proves

LEEWAY = 60


def _id_token(launch: LaunchResult) -> str:
    granted = scope_set(launch.token.scope)
    if not {"openid", "fhirUser"} <= scope_set(launch.spec.scope):
        not_applicable("the full scope set does not request openid fhirUser")
    if not launch.token.id_token:
        if {"openid", "fhirUser"} <= granted:
            fail(expected="an id_token, since openid and fhirUser were granted", actual="no id_token",
                 requirement="SMART-OIDC-01", exchange=launch.token_exchange)
        not_applicable("openid fhirUser was not granted")
    return launch.token.id_token


def _claims(launch: LaunchResult) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        return decode_unverified(_id_token(launch))
    except MalformedJwt as exc:
        fail(expected="a JWS compact serialization (header.payload.signature)", actual=str(exc),
             requirement="OIDC-01", exchange=launch.token_exchange)


@pytest.mark.requirement("SMART-OIDC-01", "CARIN-SEC-03")
@proves(Fault.ID_TOKEN_MISSING)
def test_id_token_issued(launch: LaunchResult) -> None:
    """openid fhirUser granted → an id_token comes with the access token, as a well-formed JWT."""
    _claims(launch)


@pytest.mark.requirement("SMART-OIDC-04", "SMART-OIDC-05", "OIDC-05")
@proves(Fault.ID_TOKEN_BAD_SIGNATURE, Fault.ID_TOKEN_HS256, Fault.ID_TOKEN_MISSING, Fault.ID_TOKEN_NO_KID)
def test_id_token_signature(launch: LaunchResult, http: RecordingClient) -> None:
    """The id_token is RS256-signed by a key the JWKS names by kid, found through its iss."""
    _header, claims = _claims(launch)
    iss = claims.get("iss")
    if not isinstance(iss, str):
        fail(expected="an iss claim to find the signing keys", actual=describe(iss), requirement="SMART-OIDC-05",
             exchange=launch.token_exchange)
    before = len(http.log)
    try:
        config = fetch_openid_configuration(http, iss)
        jwks = fetch_jwks(http, config["jwks_uri"])
    except Exception as exc:  # noqa: BLE001 - any failure here means the keys cannot be found from iss
        fail(expected=f"{iss}/.well-known/openid-configuration → jwks_uri → a JWK Set",
             actual=f"{type(exc).__name__}: {exc}", requirement="SMART-OIDC-05",
             exchange=http.log[-1] if len(http.log) > before else None,  # the lookup's own last request, if any
             seen=f"no request answered for the keys of iss {iss}")
    try:
        verify_signature(_id_token(launch), jwks)
    except IdTokenProblem as problem:
        requirement = {"header.alg": "SMART-OIDC-04", "header.kid": "OIDC-05"}.get(problem.field, "SMART-OIDC-05")
        fail(expected=f"{problem.field}: {problem.expected}", actual=describe(problem.actual),
             requirement=requirement, exchange=launch.token_exchange)


@pytest.mark.requirement("OIDC-01", "OIDC-02")
@proves(Fault.ID_TOKEN_EXPIRED, Fault.ID_TOKEN_MISSING, Fault.ID_TOKEN_WRONG_AUD)
def test_id_token_claims(launch: LaunchResult, advertised_issuer: str | None, target: Target) -> None:
    """iss is the advertised issuer (byte-equal), aud holds the client_id, exp is ahead and iat is not.

    Each claim is judged on its own: every wrong one is reported."""
    _, claims = _claims(launch)
    now = time.time()
    issuer = advertised_issuer  # SMART v1 discovery names none: the OpenID configuration's (plugin.py)
    aud = claims.get("aud")
    missing = [c for c in ("iss", "sub", "aud", "exp", "iat") if c not in claims]
    exp, iat = claims.get("exp"), claims.get("iat")
    issued = launch.token_exchange  # the token response that carried the id_token
    with expectations() as check:
        check.expect(claims.get("iss") == issuer, expected=f"iss {issuer!r}, byte-equal to the advertised issuer",
                     actual=f"iss {claims.get('iss')!r}", requirement="OIDC-02", exchange=issued)
        check.expect(target.client.client_id in (aud if isinstance(aud, list) else [aud]),
                     expected="aud containing the client_id", actual=f"aud {aud!r}", requirement="OIDC-02",
                     exchange=issued)
        check.expect(not missing, expected="iss, sub, aud, exp and iat present",
                     actual=f"missing claims: {', '.join(missing)}", requirement="OIDC-01", exchange=issued)
        check.expect(isinstance(exp, (int, float)) and exp + LEEWAY >= now, expected="exp in the future",
                     actual=f"exp {exp!r} (now {int(now)})", requirement="OIDC-02", exchange=issued)
        check.expect(isinstance(iat, (int, float)) and iat - LEEWAY <= now, expected="iat a past time",
                     actual=f"iat {iat!r} (now {int(now)})", exchange=issued)


@pytest.mark.requirement("OIDC-03")
@proves(Fault.ID_TOKEN_MISSING, Fault.ID_TOKEN_NONCE_NOT_ECHOED)
def test_id_token_nonce(launch: LaunchResult) -> None:
    """The nonce sent in the authorization request comes back in the id_token."""
    _, claims = _claims(launch)
    expect(claims.get("nonce") == launch.nonce, expected="the nonce of the authorization request",
           actual=f"nonce {claims.get('nonce')!r}", exchange=launch.token_exchange)


def _resolve_fhir_user(http: RecordingClient, target: Target, token: str, fhir_user: Any,
                       issued: Exchange | None) -> Reply:
    """Read fhirUser with the member's token, but only under the target's own FHIR base: a token never goes to an
    origin the id_token names (it could be anyone's, plain http included). SMART does not require fhirUser under the
    FHIR base, so elsewhere is no finding: the harness cannot check it, and says where it points. ``issued``: the
    token response that carried the id_token, the evidence of a missing claim."""
    if not isinstance(fhir_user, str) or not fhir_user:
        fail(expected="a fhirUser claim (URL of the user's FHIR resource)", actual=describe(fhir_user),
             requirement="SMART-OIDC-02", exchange=issued)
    reference = fhir_user_reference(fhir_user, target.fhir_base_url)
    if reference is None:
        where = httpx.URL(fhir_user)
        origin = f"{where.scheme}://{where.netloc.decode('ascii', 'replace')}" if where.scheme else fhir_user
        could_not_check(f"fhirUser {fhir_user!r} is outside the FHIR base {target.fhir_base_url} (it names "
                        f"{origin}): the harness sends the member's access token only to the target's own FHIR "
                        "base, so it cannot resolve it. If that server is the payer's, make it the target's "
                        "fhir_base_url in a target file of its own")
    reply = call(http, "GET", f"{target.fhir_base_url}/{reference}", token=token)
    kind = reference.split("/")[0]
    expect(reply.status == 200 and reply.resource_type == kind and kind in ("Patient", "RelatedPerson", "Person"),
           expected=f"GET {fhir_user} with the access token → 200 with a Patient, RelatedPerson or Person",
           actual=f"HTTP {reply.status} {reply.resource_type}", requirement="SMART-OIDC-02", exchange=reply.exchange)
    return reply


@pytest.mark.requirement("SMART-OIDC-02")
@proves(Fault.FHIRUSER_MISSING, Fault.ID_TOKEN_MISSING)
@needs(Needs.FHIR_USER_ON_BASE)
def test_fhir_user_resolves_to_member(launch: LaunchResult, http: RecordingClient, target: Target) -> None:
    """fhirUser resolves, with the access token, to the member's own Patient."""
    _, claims = _claims(launch)
    reply = _resolve_fhir_user(http, target, launch.token.access_token, claims.get("fhirUser"), launch.token_exchange)
    resource = reply.json()
    configured = target.member.fhir_user  # relative, or the absolute URL copied from the claim
    expected = (fhir_user_reference(configured, target.fhir_base_url) or configured) if configured else \
        f"Patient/{target.member.patient_id}"
    got = f"{resource.get('resourceType')}/{resource.get('id')}"
    expect(got == expected, expected=f"fhirUser naming {expected}", actual=f"it resolves to {got}",
           exchange=reply.exchange)


@pytest.mark.requirement("OIDC-04")
@proves(Fault.ID_TOKEN_MISSING, Fault.SUB_UNSTABLE)
def test_sub_stable_per_member(launch: LaunchResult, launcher: Launcher, target: Target) -> None:
    """sub is the same across two sign-ins of one member, and differs for another member."""
    _, first = _claims(launch)
    again = launcher.launch()
    if again.token is None or not again.token.id_token:
        could_not_check("the second launch of the member produced no id_token: " + "; ".join(again.problems))
    _, second = decode_unverified(again.token.id_token)
    with expectations() as check:  # stable for the member and distinct between members: two findings of their own
        check.expect(first.get("sub") == second.get("sub") and isinstance(first.get("sub"), str)
                     and 0 < len(first.get("sub", "")) <= 255,
                     expected="the same sub (≤ 255 chars) for two sign-ins of the member",
                     actual=f"sub {first.get('sub')!r} then {second.get('sub')!r}", exchange=again.token_exchange)
        if "other" in target.members:
            other = launcher.launch(member="other")
            if other.token is None or not other.token.id_token:
                could_not_check("the other member's launch produced no id_token: " + "; ".join(other.problems))
            _, theirs = decode_unverified(other.token.id_token)
            check.expect(theirs.get("sub") != first.get("sub"), expected="a different sub for another member",
                         actual=f"both members have sub {first.get('sub')!r}", exchange=other.token_exchange)


@pytest.mark.requirement("PDEX-SEC-04", "SMART-OIDC-02")
@proves(Fault.FHIRUSER_MISSING, Fault.PATIENT_MISSING, Fault.REPRESENTATIVE_FHIRUSER_PATIENT)
@needs(Needs.FHIR_USER_ON_BASE)
def test_representative_launch(launcher: Launcher, http: RecordingClient, target: Target) -> None:
    """A personal representative signs in for their dependent: patient is the dependent, fhirUser is the
    representative's own RelatedPerson/Person."""
    if "representative" not in target.members:
        not_applicable("the target names no representative member")
    rep = target.members["representative"]
    result = launcher.launch(member="representative", scope=target.scopes.get("representative"))
    if result.token is None:
        fail(expected="a token for the representative", actual="; ".join(result.problems),
             requirement="PDEX-SEC-04", exchange=result.token_exchange, seen=result.seen)
    with expectations() as check:  # the patient in context and the fhirUser are independent findings
        check.expect(result.token.patient == rep.patient_id, expected=f"patient {rep.patient_id!r} (the dependent)",
                     actual=f"patient {result.token.patient!r}", requirement="PDEX-SEC-04",
                     exchange=result.token_exchange)
        if result.token.id_token:
            _, claims = decode_unverified(result.token.id_token)
            reply = _resolve_fhir_user(http, target, result.token.access_token, claims.get("fhirUser"),
                                       result.token_exchange)
            resource = reply.json()
            check.expect(resource.get("resourceType") in ("RelatedPerson", "Person"),
                         expected="fhirUser of the representative: a RelatedPerson or Person",
                         actual=f"{resource.get('resourceType')}/{resource.get('id')}", requirement="SMART-OIDC-02",
                         exchange=reply.exchange)
