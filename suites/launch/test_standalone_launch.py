"""Standalone launch: sign-in, consent and the redirect back to the app

SMART App Launch 2.2 §App Launch (standalone) and the CARIN Blue Button / PDex security pages: a member's app sends
the member to the payer's authorization endpoint, the member signs in with payer credentials and approves the
app on a consent page, and the browser comes back to the app's redirect_uri with a code and the app's state,
unchanged. Denying consent sends the app an error, not a code. Here it is all done headlessly from the target's
login recipe.
"""

from __future__ import annotations

from typing import Any

import pytest

from smart_conformance.checks import describe, expect, fail, not_applicable
from smart_conformance.config import Target
from smart_conformance.fhir import call
from smart_conformance.http import RecordingClient
from smart_conformance.oauth import scope_set

from smart_conformance.oauth import AWKWARD_STATE as SPECIAL_STATE


@pytest.mark.requirement("CARIN-SEC-01", "SMART-AUTHZ-06", "PDEX-SEC-02")
def test_standalone_launch_succeeds(launcher: Any) -> None:
    """A standalone launch of the member ends in a code, the app's state and a token."""
    result = launcher.shared(require_token=False)
    expect(not result.problems, expected="redirect to redirect_uri with code and the same state, then HTTP 200 "
                                         "with a token from the token endpoint",
           actual="; ".join(result.problems))


@pytest.mark.requirement("PDEX-SEC-03", "SMART-AUTHZ-10")
def test_consent_shown_before_code(launcher: Any, target: Target) -> None:
    """The member passes a consent step before the app gets a code."""
    result = launcher.shared(require_token=False)
    consent = {s.describe() for s in launcher.recipe.consent.get("approve", ())}
    if not consent:
        not_applicable("the target's recipe has no consent steps (login.consent.approve)")
    skipped = [s for s in result.browser.steps_skipped if "redirect already captured" in s]
    expect(not skipped, expected="the consent page shown (the recipe's approve steps run) before the redirect",
           actual=f"the code arrived before these steps could run: {skipped}")


@pytest.mark.requirement("SMART-AUTHZ-01")
def test_authorize_by_post(launcher: Any, smart_config: dict[str, Any]) -> None:
    """With authorize-post advertised, an authorization request sent as a form POST works too."""
    if "authorize-post" not in (smart_config.get("capabilities") or []):
        not_applicable("authorize-post is not advertised")
    result = launcher.launch(use_post=True, tolerant=True)
    expect(result.token is not None and not result.problems, expected="a code and then a token after a POST "
                                                                        "authorization request",
           actual="; ".join(result.problems) or "no token")


@pytest.mark.requirement("SMART-AUTHZ-04", "RFC6749-02")
def test_state_returned_unchanged(launcher: Any) -> None:
    """state comes back byte-for-byte on success, special characters included."""
    result = launcher.launch(state=SPECIAL_STATE, exchange=False)
    if not result.browser.redirected or not result.code:
        fail(expected="a successful redirect to check state on", actual="; ".join(result.problems))
    expect(result.returned_state == SPECIAL_STATE, expected=f"state {SPECIAL_STATE!r}",
           actual=f"state {result.returned_state!r}")


@pytest.mark.requirement("SMART-AUTHZ-08", "PDEX-SEC-03")
def test_deny_returns_access_denied(denied_launch: Any) -> None:
    """The member presses Deny: the app gets error=access_denied and no code."""
    b = denied_launch.browser
    expect(b.redirected, expected="a redirect to the app's redirect_uri with an error",
           actual=f"no redirect; the browser stayed on {b.page_url} ({b.title!r})")
    expect(not denied_launch.code and b.error == "access_denied",
           expected="error=access_denied and no code", actual=f"error={b.error!r}, code "
                                                             f"{'present' if denied_launch.code else 'absent'}")


@pytest.mark.requirement("SMART-AUTHZ-04", "RFC6749-02")
def test_state_returned_on_error(denied_launch: Any) -> None:
    """state comes back byte-for-byte on an error redirect too."""
    b = denied_launch.browser
    if not b.redirected:
        fail(expected="an error redirect carrying state", actual=f"no redirect; stopped on {b.page_url}")
    expect(b.state == SPECIAL_STATE, expected=f"state {SPECIAL_STATE!r} on the error redirect",
           actual=f"state {b.state!r}")


@pytest.mark.requirement("SMART-AUTHZ-09", "SMART-FHIR-03")
def test_unticked_scope_withheld_and_enforced(launcher: Any, target: Target, http: RecordingClient) -> None:
    """A scope the member unticks is missing from the token, and the FHIR API refuses that resource type."""
    withheld = next((s for s in target.scopes["full"].split() if "Coverage" in s), None)
    if withheld is None:
        not_applicable("the full scope set requests no Coverage scope to withhold")
    if "untick" not in launcher.recipe.consent:
        not_applicable("the target's recipe has no untick steps (login.consent.untick)")
    result = launcher.launch(scenario=("untick", [withheld]))
    if result.token is None:
        fail(expected="a token for the remaining scopes", actual="; ".join(result.problems))
    granted = scope_set(result.token.scope)
    expect(withheld not in granted, expected=f"granted scope without {withheld!r}",
           actual=f"scope = {result.token.scope!r}")
    reply = call(http, "GET", f"{target.fhir_base_url}/Coverage", params={"patient": target.member.patient_id},
                 token=result.token.access_token)
    expect(reply.status in (401, 403) or (reply.status in target.unauthorized_statuses),
           expected=f"Coverage search refused (one of {sorted({401, 403, *target.unauthorized_statuses})}) "
                    "after the member withheld Coverage",
           actual=f"HTTP {reply.status} {describe(reply.json())}", requirement="SMART-FHIR-03",
           exchange=reply.exchange)
