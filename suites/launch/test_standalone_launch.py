"""Standalone launch: sign-in, consent and the redirect back to the app

SMART App Launch 2.2 §App Launch (standalone) and the CARIN Blue Button / PDex security pages: a member's app sends
the member to the payer's authorization endpoint, the member signs in with payer credentials and approves the
app on a consent page, and the browser comes back to the app's redirect_uri with a code and the app's state,
unchanged. Denying consent sends the app an error, not a code. Here it is all done headlessly from the target's
login recipe.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from smart_conformance.browser import compose_steps
from smart_conformance.checks import (
    could_not_check,
    describe,
    expect,
    fail,
    not_applicable,
)
from smart_conformance.config import Target
from smart_conformance.fhir import call
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import Launcher
from smart_conformance.oauth import AWKWARD_STATE as SPECIAL_STATE
from smart_conformance.oauth import normalise_scope, scope_set
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves


@pytest.mark.requirement("CARIN-SEC-01", "SMART-AUTHZ-06", "PDEX-SEC-02")
@proves(Fault.CODE_EXPIRES_IMMEDIATELY)
def test_standalone_launch_succeeds(launcher: Launcher) -> None:
    """A standalone launch of the member ends in a code, the app's state and a token."""
    result = launcher.shared(require_token=False)
    expect(not result.problems, expected="redirect to redirect_uri with code and the same state, then HTTP 200 "
                                         "with a token from the token endpoint",
           actual="; ".join(result.problems), exchange=result.token_exchange, seen=result.seen)


@pytest.mark.requirement("PDEX-SEC-03", "SMART-AUTHZ-10")
@proves(Fault.CONSENT_SKIPPED)
def test_consent_shown_before_code(launcher: Launcher, target: Target) -> None:
    """The member passes a consent step before the app gets a code."""
    result = launcher.shared(require_token=False)
    consent = {s.describe() for s in launcher.recipe.consent.get("approve", ())}
    if not consent:
        not_applicable("the target's recipe has no consent steps (login.consent.approve)")
    skipped = [s for s in result.browser.steps_skipped if "redirect already captured" in s]
    expect(not skipped, expected="the consent page shown (the recipe's approve steps run) before the redirect",
           actual=f"the code arrived before these steps could run: {skipped}", seen=result.seen)


@pytest.mark.requirement("SMART-AUTHZ-01")
@proves(Fault.AUTHORIZE_POST_UNSUPPORTED, Fault.CODE_EXPIRES_IMMEDIATELY)
def test_authorize_by_post(launcher: Launcher, smart_config: dict[str, Any]) -> None:
    """With authorize-post advertised, an authorization request sent as a form POST works too."""
    if "authorize-post" not in (smart_config.get("capabilities") or []):
        not_applicable("authorize-post is not advertised")
    result = launcher.launch(use_post=True)
    expect(result.token is not None and not result.problems, expected="a code and then a token after a POST "
                                                                        "authorization request",
           actual="; ".join(result.problems) or f"no token ({result.outcome}: {result.why})",
           exchange=result.token_exchange, seen=result.seen)


@pytest.mark.requirement("SMART-AUTHZ-04", "RFC6749-02")
@proves(Fault.STATE_ALTERED)
def test_state_returned_unchanged(launcher: Launcher) -> None:
    """state comes back byte-for-byte on success, special characters included."""
    result = launcher.launch(state=SPECIAL_STATE, exchange=False)
    if not result.browser.redirected or not result.code:
        fail(expected="a successful redirect to check state on", actual="; ".join(result.problems),
             seen=result.seen)
    expect(result.returned_state == SPECIAL_STATE, expected=f"state {SPECIAL_STATE!r}",
           actual=f"state {result.returned_state!r}", seen=result.seen)


@pytest.mark.requirement("SMART-AUTHZ-08", "PDEX-SEC-03")
@proves(Fault.CONSENT_SKIPPED, Fault.DENY_RETURNS_CODE)
def test_deny_returns_access_denied(denied_launch: LaunchResult, launcher: Launcher) -> None:
    """The member presses Deny: the app gets an error redirect and no code. That the error says access_denied is
    the wording of the refusal, judged with every other error redirect of the run by
    test_authorize_error_responses."""
    if (why := launcher.consent_not_shown(denied_launch)) is not None:
        could_not_check(f"no Deny to press: {why}")
    b = denied_launch.browser
    expect(b.redirected, expected="a redirect to the app's redirect_uri with an error",
           actual=f"no redirect; the browser stayed on {b.page_url} ({b.title!r})", seen=denied_launch.seen)
    expect(not denied_launch.code and bool(b.error),
           expected="an error (access_denied) and no code", actual=f"error={b.error!r}, code "
                                                                 f"{'present' if denied_launch.code else 'absent'}",
           seen=denied_launch.seen)


@pytest.mark.requirement("SMART-AUTHZ-04", "RFC6749-02")
@proves(Fault.STATE_NOT_ECHOED_ON_ERROR)
def test_state_returned_on_error(denied_launch: LaunchResult, launcher: Launcher) -> None:
    """state comes back byte-for-byte on an error redirect too."""
    if (why := launcher.consent_not_shown(denied_launch)) is not None:
        could_not_check(f"no error redirect to judge (Deny was never pressed): {why}")
    b = denied_launch.browser
    if not b.redirected:
        fail(expected="an error redirect carrying state", actual=f"no redirect; stopped on {b.page_url}",
             seen=denied_launch.seen)
    expect(b.state == SPECIAL_STATE, expected=f"state {SPECIAL_STATE!r} on the error redirect",
           actual=f"state {b.state!r}", seen=denied_launch.seen)


def _iss_parameter_advertised(request: pytest.FixtureRequest, smart_config: dict[str, Any]) -> str | None:
    """The issuer of the metadata document that says authorization_response_iss_parameter_supported: true
    (RFC 9207 §3), or None when neither smart-configuration nor openid-configuration says so."""
    if smart_config.get("authorization_response_iss_parameter_supported") is True:
        issuer = smart_config.get("issuer")
        if isinstance(issuer, str) and issuer:
            return issuer
    try:
        oidc = request.getfixturevalue("openid_configuration")
    except pytest.skip.Exception:
        oidc = None
    if oidc is not None and oidc.ok and oidc.json.get("authorization_response_iss_parameter_supported") is True:
        issuer = oidc.json.get("issuer")
        if isinstance(issuer, str) and issuer:
            return issuer
        could_not_check("openid-configuration advertises authorization_response_iss_parameter_supported but names "
                        "no issuer to compare the iss parameter with")
    if smart_config.get("authorization_response_iss_parameter_supported") is True:
        could_not_check("smart-configuration advertises authorization_response_iss_parameter_supported but no issuer "
                        "is advertised to compare the iss parameter with")
    return None


@pytest.mark.requirement("RFC9207-01")
@proves(Fault.AUTHORIZATION_RESPONSE_ISS_WRONG)
def test_authorization_response_names_issuer(launcher: Launcher, smart_config: dict[str, Any],
                                             request: pytest.FixtureRequest) -> None:
    """Where the metadata promises it (RFC 9207), the redirect back to the app carries iss, equal to the advertised
    issuer byte for byte: the app's defence against mix-up with another authorization server."""
    issuer = _iss_parameter_advertised(request, smart_config)
    if issuer is None:
        not_applicable("authorization_response_iss_parameter_supported is not advertised (RFC 9207 is optional)")
    control, problem = launcher.control()
    if control is None or not control.browser.redirected or not control.code:
        why = problem or (control.why if control is not None else "")
        could_not_check(f"the member's launch never came back with a code to judge: {why}")
    iss = control.browser.params.get("iss")
    expect(iss == issuer, expected=f"iss {issuer!r} in the authorization response (RFC 9207 §2)",
           actual=f"iss {iss!r}" if iss is not None else "no iss parameter", seen=control.seen)


def untick_plan(full: str) -> tuple[str, str]:
    """The scopes to request for the untick scenario, and the Coverage scope the member withholds.

    A member cannot untick one type out of a wildcard, so ``patient/*.rs`` (or ``patient/*.read``) in scopes.full is
    replaced by explicit per-type scopes in the same syntax: the check builds the scope set it needs instead of
    going quiet on the most common way payers write their configuration.
    """
    scopes = full.split()
    explicit = next((s for s in scopes if s.startswith("patient/Coverage.")), None)
    if explicit is not None:
        return full, explicit
    wildcard = next((s for s in scopes if s.startswith("patient/*.")), None)
    model = wildcard or next((s for s in scopes if s.startswith("patient/") and "." in s), "patient/Patient.rs")
    suffix = model.split(".", 1)[1]
    kept = [s for s in scopes if s != wildcard]
    for rtype in ("Patient", "Coverage"):
        if f"patient/{rtype}.{suffix}" not in kept:
            kept.append(f"patient/{rtype}.{suffix}")
    return " ".join(kept), f"patient/Coverage.{suffix}"


def _grants_coverage(granted: set[str]) -> bool:
    """Any granted scope that reads or searches Coverage (explicitly, by wildcard, in v1 or v2 syntax)."""
    for scope in granted:
        parsed = normalise_scope(scope)
        if parsed and parsed[1] in ("Coverage", "*") and parsed[2] & {"r", "s"}:
            return True
    return False


@pytest.mark.requirement("SMART-AUTHZ-09", "SMART-FHIR-03")
@proves(Fault.CODE_EXPIRES_IMMEDIATELY, Fault.CONSENT_IGNORES_UNTICKED, Fault.CONSENT_SKIPPED, Fault.SCOPE_WIDENED)
def test_unticked_scope_withheld_and_enforced(launcher: Launcher, target: Target, http: RecordingClient) -> None:
    """A scope the member unticks is missing from the token, and the FHIR API refuses that resource type; an
    unticked offline_access brings no refresh token."""
    if "untick" not in launcher.recipe.consent:
        not_applicable("the consent page offers no per-scope choice the recipe can drive (no login.consent.untick)")
    scope, withheld = untick_plan(target.scopes["full"])
    steps = compose_steps(launcher.recipe, ("untick", [withheld]))
    offline = "offline_access" in scope.split()
    if offline:
        # offline_access may have no control of its own on a consent page that has them for resource types: its
        # untick step is optional, and the refresh-token verdict is given only when the step ran.
        approve = len(launcher.recipe.consent.get("approve", ()))
        at = len(steps) - approve
        extra = [replace(step, bound={**step.bound, "scope": "offline_access"}, optional=True)
                 for step in launcher.recipe.consent["untick"]]
        steps = steps[:at] + extra + steps[at:]
    result = launcher.launch(scope=scope, steps=steps, fresh_sign_in=True)
    if (why := launcher.consent_not_shown(result)) is not None:
        could_not_check(f"nothing to untick: {why}")
    if result.token is None:
        fail(expected="a token for the remaining scopes", actual="; ".join(result.problems),
             exchange=result.token_exchange, seen=result.seen)
    granted = scope_set(result.token.scope)
    expect(not _grants_coverage(granted), expected=f"granted scope without {withheld!r}",
           actual=f"scope = {result.token.scope!r}", requirement="SMART-AUTHZ-09", exchange=result.token_exchange)
    offline_unticked = offline and not any("offline_access" in s and "not present" in s
                                           for s in result.browser.steps_skipped)
    if offline_unticked:
        expect("offline_access" not in granted and not result.token.refresh_token,
               expected="no offline_access and no refresh_token after the member unticked offline_access",
               actual=f"scope = {result.token.scope!r}, refresh_token "
                      f"{'present' if result.token.refresh_token else 'absent'}", requirement="SMART-AUTHZ-09",
               exchange=result.token_exchange)
    search = f"{target.fhir_base_url}/Coverage"
    params = {"patient": target.member.patient_id}
    reply = call(http, "GET", search, params=params, token=result.token.access_token)
    refusals = sorted({401, 403, *target.unauthorized_statuses})
    if reply.status in refusals:
        # A refusal counts only if the same search with a token that holds Coverage succeeds (positive control).
        control = launcher.shared()
        ok = call(http, "GET", search, params=params, token=control.token.access_token)
        if ok.status != 200:
            could_not_check(f"the Coverage search was refused after the untick, but also with the full-scope token "
                            f"(HTTP {ok.status}): the refusal proves nothing")
        return
    expect(False, expected=f"Coverage search refused (one of {refusals}) after the member withheld Coverage",
           actual=f"HTTP {reply.status} {describe(reply.json())}", requirement="SMART-FHIR-03",
           exchange=reply.exchange)
