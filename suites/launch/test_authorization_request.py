"""The authorization request: who may be redirected, for which server, with which proof

RFC 6749 §3.1.2 / §4.1.2.1, RFC 9700 §2.1 and SMART App Launch 2.2 §Obtain authorization code: an unknown client or
a redirect_uri that is not registered exactly never gets the browser sent to it; the ``aud`` names this FHIR server
and a foreign one is refused; the implicit grant is not offered. Each check makes a launch of its own and watches
where the browser goes — it must never arrive at a redirect_uri the server should not trust.

A negative passes only on a refusal the harness saw the server make (an error redirect, in the query or the fragment;
an error status with no redirect; a page other than the one the positive control got past), and only when the
positive control — the same recipe with valid input, in the same run — reached tokens. Anything else is *could not
check*, with the screenshot of where the launch stopped.
"""

from __future__ import annotations

import pytest

from smart_conformance.checks import could_not_check, describe, expect
from smart_conformance.config import Target
from smart_conformance.fhir import call
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import Launcher
from smart_conformance.smart.launch import LaunchOutcome, LaunchResult
from smart_conformance.testplan import Fault, Needs, needs, production_unsafe, proves

FOREIGN_AUD = "https://fhir.attacker.example/r4"


def _where(result: LaunchResult) -> str:
    b = result.browser
    if b.redirected:
        keys = sorted(b.params)
        return f"the browser was redirected to {b.redirect_url} (parameters: {', '.join(keys)})"
    return f"the browser stayed on {b.page_url} ({b.title!r})"


def _refused(result: LaunchResult) -> None:
    """Only a refusal the server was seen to make passes a negative; anything else could not be checked."""
    if not result.outcome.refused:
        could_not_check(f"the launch was {result.outcome}: {result.why}")


@pytest.mark.requirement("RFC6749-01")
@proves(Fault.UNKNOWN_CLIENT_REDIRECTS)
@needs(Needs.MEMBER_LAUNCH, Needs.AUTHORIZE_DECISION)
def test_unknown_client_not_redirected(launcher: Launcher) -> None:
    """An unknown client_id gets an error page; the browser never goes to the redirect_uri it named."""
    result = launcher.launch(request_overrides={"client_id": "smart-conformance-unknown-client"},
                             tolerant=True, exchange=False)
    expect(not result.browser.redirected, expected="an error shown by the authorization server, no redirect",
           actual=_where(result), seen=result.seen)
    _refused(result)


@pytest.mark.requirement("RFC6749-01", "OAUTHBCP-01", "SMART-AUTHZ-03")
@pytest.mark.parametrize("variant", ["extra-path", "suffix", "extra-query"])
@proves(Fault.REDIRECT_URI_PREFIX_MATCH)
@needs(Needs.MEMBER_LAUNCH, Needs.AUTHORIZE_DECISION)
def test_unregistered_redirect_uri_not_redirected(launcher: Launcher, target: Target, variant: str) -> None:
    """A redirect_uri that differs from the registered one in any way is never redirected to."""
    registered = target.client.redirect_uri
    altered = {"extra-path": registered.rstrip("/") + "/evil",
               "suffix": registered + "x",
               "extra-query": registered + ("&" if "?" in registered else "?") + "next=https://attacker.example"}[variant]
    result = launcher.launch(redirect_uri=altered, tolerant=True, exchange=False)
    expect(not result.browser.redirected, expected=f"no redirect to the unregistered {altered}",
           actual=_where(result), seen=result.seen)
    _refused(result)


@pytest.mark.requirement("SMART-AUTHZ-05", "SMART-FHIR-04")
@pytest.mark.parametrize("aud", ["foreign", "missing"])
@proves(Fault.AUD_NOT_VALIDATED)
@needs(Needs.MEMBER_LAUNCH, Needs.AUTHORIZE_DECISION)
def test_wrong_aud_refused(launcher: Launcher, target: Target, http: RecordingClient, aud: str) -> None:
    """An authorization request for another FHIR server (or none) yields no token usable here."""
    overrides = {"aud": FOREIGN_AUD} if aud == "foreign" else {"aud": None}
    result = launcher.launch(request_overrides=overrides, tolerant=True)
    if result.outcome.refused:
        return  # refused at authorize (error page or error redirect), sign-in, consent or the token endpoint
    if result.outcome is not LaunchOutcome.TOKENS:
        could_not_check(f"the launch was {result.outcome}: {result.why}")
    expect(result.token is not None, expected=f"no token for aud={overrides['aud']!r}",
           actual=f"the token endpoint answered HTTP 200 ({result.why})", requirement="SMART-AUTHZ-05",
           exchange=result.token_exchange, seen=result.seen)
    assert result.token is not None
    url = f"{target.fhir_base_url}/Patient/{target.member.patient_id}"
    reply = call(http, "GET", url, token=result.token.access_token)
    if reply.status in (401, 403, *target.unauthorized_statuses):
        # A refusal by the FHIR server counts only if the control's token (aud = this server) reads the same record.
        control, problem = launcher.control()
        if control is None or control.token is None:
            could_not_check("the FHIR server refused the token, but no positive control token to compare: "
                            f"{control.why if control is not None else problem}")
        ok = call(http, "GET", url, token=control.token.access_token)
        if ok.status != 200:
            could_not_check(f"the FHIR server refused the token for aud={overrides['aud']!r}, but also the "
                            f"control's token (HTTP {ok.status}): the refusal proves nothing")
        return
    expect(False, expected=f"no token for aud={overrides['aud']!r}, or a token this FHIR server refuses",
           actual=f"a token was issued and GET Patient answered HTTP {reply.status}", exchange=reply.exchange)


@pytest.mark.requirement("PDEX-SEC-02")
@proves(Fault.LOGIN_ACCEPTS_ANY_PASSWORD)
@needs(Needs.MEMBER_LAUNCH)
@production_unsafe("types a wrong password (it may count towards the member's lockout)")
def test_wrong_password_refused(launcher: Launcher, target: Target) -> None:
    """Signing in with a wrong password never ends in a code for the app."""
    values = {**target.member.values("member"), "member.password": "smart-conformance-wrong-password"}
    result = launcher.launch(values=values, tolerant=True, exchange=False, fresh_sign_in=True)
    expect(not result.code and not result.outcome.authorized, expected="the sign-in refused (no code issued)",
           actual=_where(result), seen=result.seen)
    _refused(result)


@pytest.mark.requirement("OAUTHBCP-03", "SMART-AUTHZ-02")
@proves(Fault.IMPLICIT_GRANT_ALLOWED)
@needs(Needs.MEMBER_LAUNCH, Needs.AUTHORIZE_DECISION)
def test_implicit_grant_refused(launcher: Launcher) -> None:
    """response_type=token (the implicit grant) never puts a token in the redirect."""
    result = launcher.launch(request_overrides={"response_type": "token"}, tolerant=True, exchange=False)
    params = result.browser.params
    leaked = [k for k in ("access_token", "id_token") if params.get(k)]
    expect(not leaked, expected="an error (unsupported_response_type) and no token in the redirect",
           actual=f"the redirect carried {', '.join(leaked)}", seen=result.seen)
    expect(not (result.browser.redirected and result.code), expected="no code for response_type=token",
           actual="the redirect carried a code", seen=result.seen)
    # The query and the fragment are both read (RFC 6749 §4.2.2.1 puts implicit errors in the fragment).
    expect(not result.browser.redirected or bool(result.browser.error),
           expected="an error page, or a redirect with error=unsupported_response_type (query or fragment)",
           actual=f"a redirect without an error parameter ({result.browser.redirect_url})", seen=result.seen)
    _refused(result)


@pytest.mark.requirement("SMART-PKCE-05", "RFC7636-02")
@proves(Fault.PKCE_NOT_REQUIRED)
@needs(Needs.MEMBER_LAUNCH, Needs.AUTHORIZE_DECISION)
def test_pkce_challenge_required(launcher: Launcher) -> None:
    """A launch without code_challenge ends in no token."""
    result = launcher.launch(pkce=False, tolerant=True)
    expect(result.outcome is not LaunchOutcome.TOKENS,
           expected="refusal at authorize (invalid_request) or at the token endpoint",
           actual=f"a token was issued without PKCE ({describe(result.token.scopes) if result.token else result.why})",
           exchange=result.token_exchange, seen=result.seen)
    _refused(result)


@pytest.mark.requirement("SMART-PKCE-02", "RFC7636-01")
@pytest.mark.parametrize("method", ["plain", "no-method"])
@proves(Fault.PKCE_PLAIN_ACCEPTED)
@needs(Needs.MEMBER_LAUNCH, Needs.AUTHORIZE_DECISION)
def test_pkce_plain_refused(launcher: Launcher, method: str) -> None:
    """code_challenge_method=plain (or a challenge with no method, which means plain) ends in no token."""
    if method == "plain":
        result = launcher.launch(pkce="plain", tolerant=True)
    else:
        result = launcher.launch(pkce="plain", request_overrides={"code_challenge_method": None},
                                 tolerant=True)
    expect(result.outcome is not LaunchOutcome.TOKENS, expected="refusal of the plain PKCE method",
           actual=f"a token was issued for a plain PKCE challenge ({result.why})",
           exchange=result.token_exchange, seen=result.seen)
    _refused(result)
