"""Token introspection and revocation

RFC 7662 and SMART App Launch 2.2 §Token introspection: for a live token the introspection endpoint reports
``active: true`` with scope, client_id, exp and the launch context (patient; iss and sub of the id_token); for a
revoked, expired or made-up token only ``active: false``. RFC 7009: the server first authenticates the client;
revoking an access token makes the FHIR API refuse it (a server that revokes only refresh tokens answers
unsupported_token_type: allowed, and a SHOULD finding); revoking a refresh token stops refresh and ends the grant's
access tokens. The delay between revocation and refusal is measured and reported. The server verifies that a token
was issued to the client asking for its revocation (another client's request leaves it working), and both endpoints
take the token in a POST body (a GET with it in the query string is refused).

Every revocation check revokes a grant of its own, and counts a refusal only after the same FHIR request with the
same token succeeded in this run (the positive control).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import jwt
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
from smart_conformance.fhir import (
    FHIR_SURFACES,
    call,
    fhir_surface,
    leaked_data,
    tampered_signature,
    unsigned_jwt,
)
from smart_conformance.http import RecordingClient, current_evidence, exchange_of
from smart_conformance.launcher import Launcher, credentials
from smart_conformance.oauth import issued_tokens, oauth_error
from smart_conformance.reference.variants import ONLY_REFRESH_TOKENS_REVOCABLE
from smart_conformance.revocation import REFUSAL_WAIT_S, refusal_statuses, wait_for_refusal, watch
from smart_conformance.smart.idtoken import decode_unverified
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.smart.token import ClientCredentials, introspect, refresh, revoke
from smart_conformance.testplan import Fault, Needs, needs, proves, warns_under


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
@proves(Fault.INTROSPECT_MISSING_PATIENT, Fault.PATIENT_MISSING, Fault.SUB_UNSTABLE)
def test_introspection_of_live_token(launch: LaunchResult, http: RecordingClient, smart_config: dict[str, Any],
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


def _introspection_control(http: RecordingClient, smart_config: dict[str, Any], target: Target, token: str,
                           verdict: str) -> None:
    """The same introspection, authenticated, of the live shared token says active: true, or ``verdict`` proves
    nothing (an endpoint that answers everyone ``active: false`` would pass it)."""
    response, body = _introspect(http, smart_config, target, token)
    if not (response.status_code == 200 and isinstance(body, dict) and body.get("active") is True):
        could_not_check(f"no positive control for {verdict}: the client's own introspection of a live token "
                        f"answered HTTP {response.status_code} {describe(body)} (see test_introspection_of_live_token)")


@pytest.mark.requirement("RFC7662-01")
@proves(Fault.INTROSPECT_UNKNOWN_ERROR)
def test_introspection_of_unknown_token(launch: LaunchResult, http: RecordingClient, smart_config: dict[str, Any],
                                        target: Target) -> None:
    """A made-up token introspects as active: false, with nothing else about it."""
    response, body = _introspect(http, smart_config, target, secrets.token_urlsafe(24))
    expect(response.status_code == 200 and isinstance(body, dict) and body.get("active") is False,
           expected="HTTP 200 with active: false", actual=f"HTTP {response.status_code} {describe(body)}",
           exchange=http.exchange_for(response))
    _introspection_control(http, smart_config, target, launch.token.access_token, "active: false for a made-up token")


@pytest.mark.requirement("RFC7662-01")
@proves(Fault.INTROSPECTION_IGNORES_SIGNATURE, Fault.INTROSPECT_UNKNOWN_ERROR)
def test_introspection_of_forged_token(launch: LaunchResult, http: RecordingClient, smart_config: dict[str, Any],
                                       target: Target) -> None:
    """A copy of the live access token with its signature changed, and (for a JWT) an unsigned copy of its claims,
    introspect as active: false: the introspection endpoint verifies what it vouches for. Positive control: the live
    token itself introspects active."""
    token = launch.token.access_token
    forged = {"tampered signature": tampered_signature(token)}
    try:
        forged["alg none"] = unsigned_jwt(jwt.decode(token, options={"verify_signature": False}))
    except jwt.PyJWTError:
        pass  # an opaque token has no claims to copy
    _introspection_control(http, smart_config, target, token, "active: false for a forged copy of a live token")
    with expectations() as check:
        for kind, value in forged.items():
            response, body = _introspect(http, smart_config, target, value)
            check.expect(response.status_code == 200 and isinstance(body, dict) and body.get("active") is False,
                         expected=f"a {kind} copy of the live token: HTTP 200 with active: false",
                         actual=f"HTTP {response.status_code} {describe(body)}", exchange=http.exchange_for(response))


@pytest.mark.requirement("RFC7662-01")
@proves(Fault.INTROSPECT_UNAUTHENTICATED)
def test_introspection_requires_authentication(launch: LaunchResult, http: RecordingClient,
                                               smart_config: dict[str, Any], target: Target) -> None:
    """The introspection endpoint tells an unauthenticated caller nothing about a live token, which the same request
    with the client's credentials shows active (positive control). How it refuses (RFC 7662 §2.3: 401 invalid_client)
    is judged by test_introspection_error_responses."""
    response = introspect(http, _endpoint(smart_config, "introspection_endpoint"), token=launch.token.access_token,
                          client=None)
    try:
        body = response.json()
    except ValueError:
        body = None
    refusals.decided(response, "introspection without client authentication")
    told = sorted(k for k in ("active", "scope", "client_id", "username", "sub", "exp", "patient")
                  if isinstance(body, dict) and body.get(k) not in (None, False))
    expect(not told, expected="nothing said about a live token to a caller without client authentication",
           actual=f"HTTP {response.status_code} {describe(body)}", exchange=http.exchange_for(response))
    refusals.note_format(refusals.record(http, response, refusals.INTROSPECTION_INVALID_CLIENT),
                         "introspection without client authentication")
    _introspection_control(http, smart_config, target, launch.token.access_token,
                           "introspection refused without client authentication")


def _endpoint_and_grant(launcher: Launcher, smart_config: dict[str, Any], why: str) -> tuple[str, Any]:
    """The revocation endpoint and a grant of the check's own (revoking must never touch the shared launch)."""
    endpoint = _endpoint(smart_config, "revocation_endpoint")
    return endpoint, launcher.fresh_grant(why)


def _revoke(http: RecordingClient, endpoint: str, target: Target, token: str, hint: str,
            client: ClientCredentials | None = None) -> httpx.Response:
    return revoke(http, endpoint, token=token, client=client or credentials(target.client), token_type_hint=hint)


def _note(text: str) -> None:
    evidence = current_evidence()
    if evidence is not None:
        evidence.notes.append(text)


@pytest.mark.requirement("RFC7009-01", "RFC7009-06", "SMART-FHIR-01")
@proves(Fault.INTROSPECT_REVOKED_ACTIVE, Fault.REVOCATION_IGNORED, Fault.REVOKED_TOKEN_ACCEPTED,
        Fault.REVOCATION_IGNORED_ON_SEARCHES)
# RFC 7009 §2.1: access-token revocation is a SHOULD; a server revoking refresh tokens only honestly warns here.
@warns_under(ONLY_REFRESH_TOKENS_REVOCABLE)
def test_revoked_access_token_refused(launcher: Launcher, http: RecordingClient, smart_config: dict[str, Any],
                                      target: Target) -> None:
    """After revocation the FHIR API refuses the access token it accepted just before (the delay is measured), on
    the read and on every other way in that worked with it (search, a next link, ``_include``, ``$everything``), and
    the token introspects inactive. unsupported_token_type (a server that revokes only refresh tokens) is the SHOULD
    of RFC 7009 §2 unmet, not a SHALL failure."""
    endpoint, result = _endpoint_and_grant(launcher, smart_config, "the access-token revocation check")
    watched = watch(http, target, result.token.access_token, "a revoked access token refused", result.token.patient)
    pid = str(result.token.patient or target.member.patient_id)
    surfaces = [s for s in (fhir_surface(http, target.fhir_base_url, pid, watched.token, name) for name in FHIR_SURFACES)
                if s.absent is None and s.control.ok]  # each worked with the token before it was revoked
    response = _revoke(http, endpoint, target, watched.token, "access_token")
    err = oauth_error(response)
    if response.status_code == 400 and err.error == "unsupported_token_type":
        fail(expected="the access token revoked (RFC 7009 §2: the server SHOULD support revoking access tokens)",
             actual="HTTP 400 unsupported_token_type: access tokens cannot be revoked here, so a leaked one works "
                    "until it expires", requirement="RFC7009-06", exchange=http.exchange_for(response))
    expect(response.status_code == 200, expected="HTTP 200 from the revocation endpoint",
           actual=f"HTTP {response.status_code} {describe(err.body)}", requirement="RFC7009-01",
           exchange=http.exchange_for(response))
    delay, reply = wait_for_refusal(http, target, watched)
    _note(f"revocation → refusal: {delay:.2f}s" if delay is not None else
          f"revocation → refusal: still accepted after {REFUSAL_WAIT_S:.0f}s")
    expect(delay is not None, expected=f"the revoked token refused within {REFUSAL_WAIT_S:.0f}s (it worked before)",
           actual=f"HTTP {reply.status} after {REFUSAL_WAIT_S:.0f}s", requirement="RFC7009-01",
           exchange=reply.exchange)
    with expectations() as check:  # every other way in refuses it as well, each a finding of its own
        for surface in surfaces:
            reply = call(http, "GET", surface.url, token=watched.token, params=surface.params)
            check.expect(reply.status in refusal_statuses(target) and not leaked_data(reply),
                         expected=f"the revoked token refused on the {surface.name} too (it worked there before)",
                         actual=f"HTTP {reply.status} {reply.resource_type or ''}".strip(), requirement="RFC7009-01",
                         exchange=reply.exchange)
    if isinstance(smart_config.get("introspection_endpoint"), str):
        introspected, body = _introspect(http, smart_config, target, watched.token)
        expect(isinstance(body, dict) and body.get("active") is False, expected="active: false for a revoked token",
               actual=describe(body), requirement="RFC7009-01", exchange=exchange_of(introspected))


@pytest.mark.requirement("RFC7009-01", "RFC7009-02", "RFC7009-04")
@proves(Fault.ACCESS_SURVIVES_REFRESH_REVOCATION, Fault.REFRESH_SURVIVES_REVOCATION, Fault.REVOKED_TOKEN_ACCEPTED)
def test_revoked_refresh_token_stops_refresh(launcher: Launcher, http: RecordingClient, smart_config: dict[str, Any],
                                            target: Target) -> None:
    """A refresh token that refreshed a moment ago stops refreshing once revoked, and the grant's access token, which
    worked before, is refused (RFC 7009 §2.1 asks this of servers that revoke access tokens)."""
    endpoint, result = _endpoint_and_grant(launcher, smart_config, "the refresh-token revocation check")
    if not result.token.refresh_token:
        not_applicable("no refresh_token was issued (see test_refresh_token_issued)")
    watched = watch(http, target, result.token.access_token, "the grant's access token refused after revocation",
                    result.token.patient)
    control = refresh(http, launcher.token_endpoint, refresh_token=result.token.refresh_token,
                      client=credentials(target.client))
    if not issued_tokens(control):
        could_not_check(f"no positive control: the fresh refresh token did not refresh before revocation "
                        f"(HTTP {control.status_code}; see test_refresh_returns_new_access_token)")
    rotated = control.json().get("refresh_token")
    live = rotated if isinstance(rotated, str) and rotated else result.token.refresh_token
    response = _revoke(http, endpoint, target, live, "refresh_token")
    expect(response.status_code == 200, expected="HTTP 200 from the revocation endpoint for a refresh token",
           actual=f"HTTP {response.status_code} {describe(oauth_error(response).body)}", requirement="RFC7009-04",
           exchange=http.exchange_for(response))
    again = refresh(http, launcher.token_endpoint, refresh_token=live, client=credentials(target.client))
    expect(not issued_tokens(again), expected="refresh refused after the refresh token was revoked (it refreshed "
                                              "just before)",
           actual=f"HTTP {again.status_code} with new tokens", requirement="RFC7009-01",
           exchange=http.exchange_for(again))
    delay, reply = wait_for_refusal(http, target, watched)
    if delay is None:
        probe = _revoke(http, endpoint, target, watched.token, "access_token")
        if probe.status_code == 400 and oauth_error(probe).error == "unsupported_token_type":
            _note("the grant's access token outlived the refresh token's revocation; this server does not revoke "
                  "access tokens (unsupported_token_type), and RFC 7009 §2.1 asks it to end them only if it does "
                  "(see test_revoked_access_token_refused)")
            return
    expect(delay is not None, expected="the grant's access token (it worked before) refused once its refresh token "
                                       "is revoked",
           actual=f"HTTP {reply.status} after {REFUSAL_WAIT_S:.0f}s", requirement="RFC7009-02",
           exchange=reply.exchange)


@pytest.mark.requirement("RFC7009-07")
@proves(Fault.REVOCATION_WITHOUT_CLIENT_AUTH)
@needs(Needs.AUTHENTICATED_REVOCATION)
def test_revocation_requires_client_authentication(launcher: Launcher, http: RecordingClient,
                                                   smart_config: dict[str, Any], target: Target) -> None:
    """Revocation without client credentials is refused and revokes nothing (RFC 7009 §2.1: the server first
    validates the client's credentials); the same revocation with them then works."""
    if target.client.auth_method == "none":
        not_applicable("the target's client is public (auth_method: none): it has no credentials to present")
    endpoint, result = _endpoint_and_grant(launcher, smart_config, "the revocation authentication check")
    if not result.token.refresh_token:
        not_applicable("no refresh_token was issued (see test_refresh_token_issued): refresh tokens are the token "
                       "type every revocation endpoint must revoke")
    client = credentials(target.client)
    live = result.token.refresh_token

    def still_refreshes() -> str:
        """The live refresh token after one authenticated refresh (rotation followed), or "" if it was refused."""
        response = refresh(http, launcher.token_endpoint, refresh_token=live, client=client)
        if not issued_tokens(response):
            return ""
        body = response.json()
        rotated = body.get("refresh_token") if isinstance(body, dict) else None
        return rotated if isinstance(rotated, str) and rotated else live

    live = still_refreshes() or could_not_check(
        "no positive control: the fresh refresh token did not refresh (see test_refresh_returns_new_access_token)")
    anonymous = _revoke(http, endpoint, target, live, "refresh_token",
                        client=ClientCredentials(target.client.client_id, None, "none"))
    exchange = http.exchange_for(anonymous)
    after = still_refreshes()
    expect(bool(after), expected="the refresh token still working after a revocation request without client "
                                 "credentials",
           actual=f"revocation without credentials answered HTTP {anonymous.status_code} and the refresh token no "
                  "longer refreshes: anyone holding a token can revoke it", exchange=exchange)
    refusals.note_format(refusals.record(http, anonymous, refusals.REVOCATION_INVALID_CLIENT),
                         "a revocation without client credentials")
    live = after
    revoked = _revoke(http, endpoint, target, live, "refresh_token")
    if revoked.status_code != 200 or still_refreshes():
        could_not_check(f"no positive control: the same revocation with the client's credentials did not revoke "
                        f"either (HTTP {revoked.status_code}; see test_revoked_refresh_token_stops_refresh)")


def _revocation_served(http: RecordingClient, endpoint: str, client: ClientCredentials, who: str,
                       verdict: str) -> None:
    """Positive control: the revocation endpoint, asked by ``client`` the defined way (a POST), revokes a made-up
    token with HTTP 200 (RFC 7009 §2.2: an invalid token is no error). Else ``verdict`` proves nothing: the request
    may have been refused for its credentials or its URL, not for what the check changed."""
    response = revoke(http, endpoint, token=secrets.token_urlsafe(24), client=client, token_type_hint="refresh_token")
    if response.status_code != 200:
        could_not_check(f"no positive control for {verdict}: a POST revocation of a made-up token by {who} answered "
                        f"HTTP {response.status_code} {describe(oauth_error(response).body)} instead of 200")


@pytest.mark.requirement("RFC7009-08", "RFC7662-02")
@proves(Fault.REVOCATION_ACCEPTS_GET, Fault.INTROSPECTION_ACCEPTS_GET)
def test_revocation_and_introspection_take_post_only(launcher: Launcher, http: RecordingClient,
                                                     smart_config: dict[str, Any], target: Target) -> None:
    """RFC 7662 §2.1 and RFC 7009 §2.1 define a POST with the token in a form body: a GET carrying the run's own
    token (and the client's credentials) in the query string, where logs and history keep it, is refused. The GET
    introspection says nothing about the token, and the GET revocation leaves it working (the same read succeeds
    before and after). Positive controls: the same introspection and a revocation, by POST, are served."""
    names = [n for n in ("introspection_endpoint", "revocation_endpoint") if isinstance(smart_config.get(n), str)]
    if not names:
        not_applicable("neither introspection_endpoint nor revocation_endpoint is advertised")
    result = launcher.fresh_grant("the POST-only check of introspection and revocation")
    token = result.token.access_token
    watched = watch(http, target, token, "a revocation by GET ignored", result.token.patient)
    client = credentials(target.client)
    if "introspection_endpoint" in names:
        _introspection_control(http, smart_config, target, token, "an introspection by GET refused")
    if "revocation_endpoint" in names:
        _revocation_served(http, smart_config["revocation_endpoint"], client, "the client",
                           "a revocation by GET refused")
    with expectations() as check:
        for name in names:
            url, requirement = smart_config[name], "RFC7662-02" if name == "introspection_endpoint" else "RFC7009-08"
            params = {"token": token, "token_type_hint": "access_token"}
            headers: dict[str, str] = {"Accept": "application/json"}
            client.apply(params, headers, url)  # properly authenticated: only the method is wrong
            response = http.get(url, params=params, headers=headers)
            exchange, body = http.exchange_for(response), oauth_error(response).body
            check.expect(400 <= response.status_code < 500, expected=f"GET {name} refused (405, or another 4xx)",
                         actual=f"HTTP {response.status_code} {describe(body)}", requirement=requirement,
                         exchange=exchange)
            if name == "introspection_endpoint":
                check.expect(not (isinstance(body, dict) and "active" in body),
                             expected="nothing said about the token in answer to a GET",
                             actual=f"active: {body.get('active')!r}" if isinstance(body, dict) else "",
                             requirement=requirement, exchange=exchange)
        if "revocation_endpoint" in names:
            reply = call(http, "GET", watched.url, token=token)
            check.expect(reply.status == 200, expected="the token still working after a revocation request by GET "
                                                       "(the same read succeeded before)",
                         actual=f"HTTP {reply.status}: the GET revoked it", requirement="RFC7009-08",
                         exchange=reply.exchange)


@pytest.mark.requirement("RFC7009-03")
@proves(Fault.REVOCATION_CROSS_CLIENT)
def test_other_client_cannot_revoke(launcher: Launcher, http: RecordingClient, smart_config: dict[str, Any],
                                    target: Target) -> None:
    """Another registered client asking to revoke this client's access and refresh tokens is refused or ignored:
    both still work afterwards (RFC 7009 §2.1: the server verifies that the token was issued to the client making
    the request). Positive controls: the same read worked with the token before, and the other client's own
    revocation requests are served."""
    if target.other_client is None:
        not_applicable("the target names no other_client")
    endpoint, result = _endpoint_and_grant(launcher, smart_config, "the cross-client revocation check")
    other = credentials(target.other_client)
    _revocation_served(http, endpoint, other, "the other client", "another client's revocation ignored")
    watched = watch(http, target, result.token.access_token, "another client's revocation ignored",
                    result.token.patient)
    tried = [_revoke(http, endpoint, target, watched.token, "access_token", client=other)]
    if result.token.refresh_token:
        tried.append(_revoke(http, endpoint, target, result.token.refresh_token, "refresh_token", client=other))
    _note("the other client's revocation requests answered " + ", ".join(f"HTTP {r.status_code}" for r in tried))
    with expectations() as check:
        reply = call(http, "GET", watched.url, token=watched.token)
        check.expect(reply.status == 200, expected="the access token still working after another client asked to "
                                                   "revoke it (it worked just before)",
                     actual=f"HTTP {reply.status}: another client revoked it", exchange=reply.exchange)
        if result.token.refresh_token:
            again = refresh(http, launcher.token_endpoint, refresh_token=result.token.refresh_token,
                            client=credentials(target.client))
            check.expect(issued_tokens(again), expected="the refresh token still refreshing for its own client after "
                                                        "another client asked to revoke it",
                         actual=f"HTTP {again.status_code} {describe(oauth_error(again).body)}",
                         exchange=http.exchange_for(again))
