"""Typed launch outcomes: how a launch ended, judged from what the harness saw the server do (issue 10).

Every launch ends as exactly one of: tokens issued, code issued (not exchanged), refused at authorize / sign-in /
consent / the token endpoint, or inconclusive. A negative launch's refusal counts only when the positive control (the
same recipe, valid input, same run) reached tokens; a recipe step that did not match proves nothing by itself.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest

from smart_conformance.browser import (
    AuthorizationResult,
    _response_params,
    compose_steps,
    parse_recipe,
)
from smart_conformance.smart.launch import (
    LaunchOutcome,
    LaunchResult,
    LaunchSpec,
    build_request,
    judge,
)
from smart_conformance.smart.token import ClientCredentials

RECIPE = parse_recipe({
    "steps": [{"fill": {"selector": "#username", "value": "${member.username}"}},
              {"fill": {"selector": "#password", "value": "${member.password}"}},
              {"click": "button[type=submit]"}],
    "consent": {"approve": [{"click": "button[value=allow]"}], "deny": [{"click": "button[value=deny]"}]},
})
STEPS = compose_steps(RECIPE, "approve")
LOGIN, CONSENT = "https://as.example/login", "https://as.example/consent"


def spec(**changes: Any) -> LaunchSpec:
    base = LaunchSpec(authorization_endpoint="https://as.example/authorize", token_endpoint="https://as.example/token",
                      fhir_base_url="https://fhir.example/r4", client=ClientCredentials("app", "secret"),
                      redirect_uri="http://127.0.0.1:8765/callback", scope="launch/patient patient/Patient.rs",
                      steps=STEPS)
    return replace(base, **changes)


def browser(**changes: Any) -> AuthorizationResult:
    base = AuthorizationResult(redirected=False, redirect_url=None, params={}, param_list=[], page_url=LOGIN,
                               title="Sign in", text_snippet="", screenshots=[], trace_path=None, tls_mode="spki-pin",
                               expect_redirect=False, steps_run=[], steps_skipped=[], seconds=1.0, settled=True)
    return replace(base, **changes)


def result(the_spec: LaunchSpec, the_browser: AuthorizationResult, token_status: int | None = None) -> LaunchResult:
    out = LaunchResult(spec=the_spec, request=build_request(the_spec)[0], authorization_url="https://as.example/a",
                       browser=the_browser, code_verifier=None, nonce=None, state="s")
    if token_status is not None:
        out.token_response = httpx.Response(token_status, json={"error": "invalid_grant"} if token_status != 200
                                            else {"access_token": "t", "token_type": "Bearer"})
    return out


def control(reached: bool = True) -> LaunchResult:
    """The positive control: the approve recipe ran every step (login page, then consent) and got tokens."""
    redirected = browser(redirected=True, params={"code": "c", "state": "s"}, steps_done=4,
                         step_pages=[LOGIN, LOGIN, LOGIN, CONSENT], expect_redirect=True)
    out = result(spec(), redirected, token_status=200 if reached else 400)
    out.outcome, out.why = judge(out)
    return out


def negative(the_browser: AuthorizationResult, ctl: LaunchResult | None = None, **changes: Any) -> LaunchResult:
    out = result(spec(negative=True, expect_redirect=False, **changes), the_browser)
    out.outcome, out.why = judge(out, ctl)
    return out


# --- the redirect --------------------------------------------------------------------------------------------------

def test_error_redirect_in_the_fragment_is_read() -> None:
    """RFC 6749 §4.2.2.1: an implicit request's error comes in the fragment; the query is read too, first."""
    url = "http://127.0.0.1:8765/callback#error=unsupported_response_type&state=s"
    assert dict(_response_params(url)) == {"error": "unsupported_response_type", "state": "s"}
    # Chromium never sends the fragment: CDP hands it over separately (urlFragment).
    assert dict(_response_params("http://127.0.0.1:8765/callback", fragment="#error=x&state=s"))["error"] == "x"
    both = _response_params("http://127.0.0.1:8765/callback?next=1&code=c#state=s")
    assert both == [("next", "1"), ("code", "c"), ("state", "s")]
    assert _response_params("http://127.0.0.1:8765/callback?code=c#/route") == [("code", "c")]


def test_fragment_error_redirect_is_a_refusal_at_authorize() -> None:
    b = browser(redirected=True, params={"error": "unsupported_response_type", "state": "s"}, response_in="fragment")
    out = negative(b, control())
    assert out.outcome is LaunchOutcome.REFUSED_AT_AUTHORIZE and "fragment" in out.why


def test_deny_after_the_consent_step_is_a_refusal_at_consent() -> None:
    b = browser(redirected=True, params={"error": "access_denied"}, steps_done=4, response_in="query")
    out = result(spec(steps=compose_steps(RECIPE, "deny"), exchange=False), b)
    assert judge(out)[0] is LaunchOutcome.REFUSED_AT_CONSENT


def test_a_redirect_with_a_code_is_never_a_refusal() -> None:
    b = browser(redirected=True, params={"code": "c", "state": "s"}, steps_done=4)
    assert negative(b, control(), exchange=False).outcome is LaunchOutcome.CODE
    spent = result(spec(negative=True), b, token_status=200)
    assert judge(spent, control())[0] is LaunchOutcome.TOKENS
    refused = result(spec(negative=True), b, token_status=400)
    outcome, why = judge(refused, control())
    assert outcome is LaunchOutcome.REFUSED_AT_TOKEN and "invalid_grant" in why


def test_a_token_in_the_redirect_is_tokens_issued() -> None:
    b = browser(redirected=True, params={"access_token": "t", "state": "s"}, response_in="fragment", steps_done=4)
    assert negative(b, control()).outcome is LaunchOutcome.TOKENS


# --- no redirect -----------------------------------------------------------------------------------------------------

def test_error_status_before_any_step_is_a_refusal_at_authorize() -> None:
    """An empty-body 400 (Chromium's own error page) is the server's answer, not a broken recipe."""
    b = browser(status=400, page_url="chrome-error://chromewebdata/", title="as.example",
                document_url="https://as.example/authorize", stopped_at=1)
    out = negative(b, control())
    assert out.outcome is LaunchOutcome.REFUSED_AT_AUTHORIZE and "HTTP 400, empty body" in out.why


def test_error_status_after_the_sign_in_is_a_refusal_at_sign_in() -> None:
    b = browser(status=401, steps_done=3, stopped_at=4, step_pages=[LOGIN, LOGIN, LOGIN])
    assert negative(b, control()).outcome is LaunchOutcome.REFUSED_AT_SIGN_IN


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_a_server_error_or_rate_limit_is_never_a_refusal(status: int) -> None:
    """A 5xx or a 429 at authorize, at sign-in or at the token endpoint says the server did not decide: a negative
    launch that meets one is inconclusive (could not check), never a refusal that passes it."""
    at_authorize = negative(browser(status=status, document_url="https://as.example/authorize", stopped_at=1),
                            control())
    at_sign_in = negative(browser(status=status, steps_done=3, stopped_at=4, step_pages=[LOGIN, LOGIN, LOGIN]),
                          control())
    coded = browser(redirected=True, params={"code": "c", "state": "s"}, steps_done=4)
    at_token = result(spec(negative=True), coded, token_status=status)
    for outcome, why in ((at_authorize.outcome, at_authorize.why), (at_sign_in.outcome, at_sign_in.why),
                         judge(at_token, control())):
        assert outcome is LaunchOutcome.INCONCLUSIVE and f"HTTP {status}" in why and "not a refusal" in why


def test_unmatched_step_counts_only_where_the_control_got_past_it() -> None:
    """The consent step did not match after the sign-in steps ran: refused at sign-in, because the control proves
    the consent step matches on the positive path (and the page had settled)."""
    b = browser(status=200, steps_done=3, stopped_at=4, step_pages=[LOGIN, LOGIN, LOGIN], stop_reason="gone")
    out = negative(b, control())
    assert out.outcome is LaunchOutcome.REFUSED_AT_SIGN_IN and "positive control found it" in out.why
    assert negative(replace(b, settled=False), control()).outcome is LaunchOutcome.INCONCLUSIVE


def test_recipe_first_selector_changed_is_inconclusive() -> None:
    """The first step matched on neither the negative nor the control launch: nothing was seen decided."""
    failed = control(reached=False)
    assert failed.outcome is LaunchOutcome.REFUSED_AT_TOKEN
    b = browser(status=200, stopped_at=1, stop_reason="selector not found within 10s")
    for ctl in (None, failed):
        out = negative(b, ctl)
        assert out.outcome is LaunchOutcome.INCONCLUSIVE and "step 1" in out.why and "positive control" in out.why
    out = result(spec(negative=True), b)
    out.outcome, out.why = judge(out, None, control_problem="login step 1 (fill) could not proceed; screenshot: /x")
    assert out.outcome is LaunchOutcome.INCONCLUSIVE and "could not run either (login step 1" in out.why


def test_a_refusal_needs_a_positive_control_that_reached_tokens() -> None:
    b = browser(status=400, document_url="https://as.example/authorize")
    assert negative(b, control()).outcome is LaunchOutcome.REFUSED_AT_AUTHORIZE
    for ctl in (None, control(reached=False)):
        out = negative(b, ctl)
        assert out.outcome is LaunchOutcome.INCONCLUSIVE and "positive control" in out.why
    out = result(spec(negative=True), b)
    out.outcome, out.why = judge(out, None, control_problem="login step 1 could not proceed")
    assert out.outcome is LaunchOutcome.INCONCLUSIVE and "login step 1 could not proceed" in out.why
    # A launch expected to succeed needs no control: its refusal is reported as it is.
    assert judge(result(spec(), b))[0] is LaunchOutcome.REFUSED_AT_AUTHORIZE


def test_a_redirect_without_code_or_error_is_inconclusive() -> None:
    b = browser(redirected=True, params={"state": "s"}, steps_done=4)
    assert negative(b, control()).outcome is LaunchOutcome.INCONCLUSIVE


@pytest.mark.parametrize("outcome", list(LaunchOutcome))
def test_outcomes_are_exclusive(outcome: LaunchOutcome) -> None:
    assert [outcome.refused, outcome.authorized, outcome is LaunchOutcome.INCONCLUSIVE].count(True) == 1


# --- the request (class 1) -------------------------------------------------------------------------------------------

def test_nonce_only_when_openid_is_requested() -> None:
    """OIDC Core §3.1.2.1: nonce belongs to OpenID requests; a conformant OP may refuse it otherwise."""
    assert "nonce" not in build_request(spec(scope="launch/patient patient/Patient.rs"))[0].to_form()
    assert build_request(spec(scope="openid fhirUser launch/patient"))[0].to_form()["nonce"]
    assert "nonce" not in build_request(spec(scope="openid launch/patient", nonce=False))[0].to_form()
    sent = build_request(spec(scope="launch/patient openid"))[0].to_form()
    assert set(sent) == {"response_type", "client_id", "redirect_uri", "scope", "state", "aud", "code_challenge",
                         "code_challenge_method", "nonce"}
