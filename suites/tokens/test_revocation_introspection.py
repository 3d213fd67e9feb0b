"""Token introspection and revocation

RFC 7662 and SMART App Launch 2.2 §Token introspection: for a live token the introspection endpoint reports
``active: true`` with scope, client_id, exp and the launch context (patient; iss and sub of the id_token); for a
revoked, expired or made-up token only ``active: false``. RFC 7009: revoking an access token makes the FHIR API refuse
it; revoking a refresh token stops refresh and ends the grant's access tokens. The delay between revocation and
refusal is measured and reported.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from smart_conformance.checks import could_not_check, describe, expect, not_applicable
from smart_conformance.config import Target
from smart_conformance.fhir import call
from smart_conformance.http import RecordingClient, current_evidence
from smart_conformance.launcher import credentials
from smart_conformance.oauth import issued_tokens
from smart_conformance.smart.idtoken import decode_unverified
from smart_conformance.smart.token import introspect, refresh, revoke

REFUSAL_WAIT_S = 10.0
REFUSAL_POLL_S = 0.25


def _endpoint(smart_config: dict[str, Any], name: str) -> str:
    url = smart_config.get(name)
    if not isinstance(url, str):
        not_applicable(f"{name} is not advertised")
    return url


def _introspect(http: RecordingClient, smart_config: dict[str, Any], target: Target, token: str) -> Any:
    response = introspect(http, _endpoint(smart_config, "introspection_endpoint"), token=token,
                          client=credentials(target.client))
    try:
        body = response.json()
    except ValueError:
        body = None
    return response, body


@pytest.mark.requirement("SMART-INTRO-02", "SMART-INTRO-03", "SMART-INTRO-04")
def test_introspection_of_live_token(launch: Any, http: RecordingClient, smart_config: dict[str, Any],
                                     target: Target) -> None:
    """A live access token introspects as active, with scope, client_id, exp, patient and the id_token's iss/sub."""
    response, body = _introspect(http, smart_config, target, launch.token.access_token)
    exchange = http.exchange_for(response)
    expect(response.status_code == 200 and isinstance(body, dict) and body.get("active") is True,
           expected="HTTP 200 with active: true", actual=f"HTTP {response.status_code} {describe(body)}",
           requirement="SMART-INTRO-02", exchange=exchange)
    problems = [f"{f} missing" for f in ("scope", "client_id", "exp") if f not in body]
    if body.get("client_id") not in (None, target.client.client_id):
        problems.append(f"client_id {body.get('client_id')!r}")
    if isinstance(body.get("exp"), int) and launch.token.expires_in and \
            abs(body["exp"] - (time.time() + launch.token.expires_in)) > launch.token.expires_in + 120:
        problems.append(f"exp {body['exp']} inconsistent with expires_in {launch.token.expires_in}")
    expect(not problems, expected="scope, client_id and exp (RFC 7662 / SMART)", actual="; ".join(problems),
           requirement="SMART-INTRO-02", exchange=exchange)
    expect(body.get("patient") == launch.token.patient, expected=f"patient {launch.token.patient!r} as in the "
                                                                 "token response",
           actual=f"patient {body.get('patient')!r}", requirement="SMART-INTRO-03", exchange=exchange)
    if launch.token.id_token:
        _, claims = decode_unverified(launch.token.id_token)
        got = (body.get("iss"), body.get("sub"))
        expect(got == (claims.get("iss"), claims.get("sub")), expected="iss and sub of the id_token",
               actual=f"iss {got[0]!r}, sub {got[1]!r}", requirement="SMART-INTRO-04", exchange=exchange)


@pytest.mark.requirement("RFC7662-01")
def test_introspection_of_unknown_token(http: RecordingClient, smart_config: dict[str, Any], target: Target) -> None:
    """A made-up token introspects as active: false, with nothing else about it."""
    response, body = _introspect(http, smart_config, target, secrets.token_urlsafe(24))
    expect(response.status_code == 200 and isinstance(body, dict) and body.get("active") is False,
           expected="HTTP 200 with active: false", actual=f"HTTP {response.status_code} {describe(body)}",
           exchange=http.exchange_for(response))


@pytest.mark.requirement("RFC7662-01")
def test_introspection_requires_authentication(launch: Any, http: RecordingClient,
                                               smart_config: dict[str, Any]) -> None:
    """The introspection endpoint does not answer an unauthenticated caller about a live token."""
    response = introspect(http, _endpoint(smart_config, "introspection_endpoint"), token=launch.token.access_token,
                          client=None)
    try:
        body = response.json()
    except ValueError:
        body = None
    leaked = isinstance(body, dict) and body.get("active") is True
    expect(response.status_code in (400, 401, 403) and not leaked,
           expected="HTTP 401 (or 400/403) for introspection without client authentication",
           actual=f"HTTP {response.status_code} {describe(body)}", exchange=http.exchange_for(response))


def _fresh_grant(launcher: Any, smart_config: dict[str, Any]) -> tuple[str, Any]:
    """The revocation endpoint and a launch of its own (revoking must not touch the shared launch's tokens)."""
    endpoint = _endpoint(smart_config, "revocation_endpoint")
    result = launcher.launch()
    if result.token is None:
        could_not_check("no token to revoke: " + "; ".join(result.problems))
    return endpoint, result


def _revoke(http: RecordingClient, endpoint: str, target: Target, token: str, hint: str) -> None:
    """RFC 7009 §2.2: the revocation endpoint answers 200 (also for tokens it no longer knows)."""
    response = revoke(http, endpoint, token=token, client=credentials(target.client), token_type_hint=hint)
    expect(response.status_code == 200, expected="HTTP 200 from the revocation endpoint",
           actual=f"HTTP {response.status_code}", requirement="RFC7009-01", exchange=http.exchange_for(response))


def _wait_for_refusal(http: RecordingClient, url: str, token: str) -> tuple[float | None, Any]:
    """Poll the FHIR API until it refuses the token; the delay is the measurement the report shows."""
    started = time.monotonic()
    reply = None
    while time.monotonic() - started < REFUSAL_WAIT_S:
        reply = call(http, "GET", url, token=token)
        if reply.status in (401, 403):
            return time.monotonic() - started, reply
        time.sleep(REFUSAL_POLL_S)  # polling the target's behaviour, not waiting for a server to start
    return None, reply


@pytest.mark.requirement("RFC7009-01", "SMART-FHIR-01")
def test_revoked_access_token_refused(launcher: Any, http: RecordingClient, smart_config: dict[str, Any],
                                      target: Target) -> None:
    """After revocation the FHIR API refuses the access token (the delay is measured) and it introspects inactive."""
    endpoint, result = _fresh_grant(launcher, smart_config)
    token = result.token.access_token
    url = f"{target.fhir_base_url}/Patient/{target.member.patient_id}"
    before = call(http, "GET", url, token=token)
    if before.status != 200:
        could_not_check(f"the fresh token did not work before revocation (HTTP {before.status})")
    _revoke(http, endpoint, target, token, "access_token")
    delay, reply = _wait_for_refusal(http, url, token)
    evidence = current_evidence()
    if evidence is not None:
        evidence.notes.append(f"revocation → refusal: {delay:.2f}s" if delay is not None else
                              f"revocation → refusal: still accepted after {REFUSAL_WAIT_S:.0f}s")
    expect(delay is not None, expected=f"HTTP 401 for the revoked token within {REFUSAL_WAIT_S:.0f}s",
           actual=f"HTTP {reply.status if reply else '?'} after {REFUSAL_WAIT_S:.0f}s", requirement="RFC7009-01",
           exchange=reply.exchange if reply else None)
    if isinstance(smart_config.get("introspection_endpoint"), str):
        _, body = _introspect(http, smart_config, target, token)
        expect(isinstance(body, dict) and body.get("active") is False, expected="active: false for a revoked token",
               actual=describe(body), requirement="RFC7009-01")


@pytest.mark.requirement("RFC7009-01", "RFC7009-02")
def test_revoked_refresh_token_stops_refresh(launcher: Any, http: RecordingClient, smart_config: dict[str, Any],
                                            target: Target) -> None:
    """After the refresh token is revoked it cannot refresh, and the grant's access token stops working."""
    endpoint, result = _fresh_grant(launcher, smart_config)
    if not result.token.refresh_token:
        not_applicable("no refresh_token was issued (see test_refresh_token_issued)")
    _revoke(http, endpoint, target, result.token.refresh_token, "refresh_token")
    again = refresh(http, launcher.token_endpoint, refresh_token=result.token.refresh_token,
                    client=credentials(target.client))
    expect(not issued_tokens(again), expected="refresh refused after the refresh token was revoked",
           actual=f"HTTP {again.status_code} with new tokens", requirement="RFC7009-01",
           exchange=http.exchange_for(again))
    delay, reply = _wait_for_refusal(http, f"{target.fhir_base_url}/Patient/{target.member.patient_id}",
                                     result.token.access_token)
    expect(delay is not None, expected="the grant's access token refused once its refresh token is revoked",
           actual=f"HTTP {reply.status if reply else '?'} after {REFUSAL_WAIT_S:.0f}s", requirement="RFC7009-02",
           exchange=reply.exchange if reply else None)
