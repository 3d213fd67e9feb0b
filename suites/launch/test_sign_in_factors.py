"""Sign-in factors: a member enrolled in a second factor is signed in by both

NIST SP 800-63B §4.2 (AAL2): a sign-in that asks for a password and a one-time code proves two distinct factors only
if the server waits for the code. Where the target's login recipe declares the member's second factor (a required
``totp`` step), the shared launch, a fresh sign-in that types the password, must pass the code page before the app
gets its code. A launch that reuses the identity provider's session (single sign-on) skips both factors rightly and
is never judged here.
"""

from __future__ import annotations

import pytest

from smart_conformance import redact
from smart_conformance.checks import could_not_check, expect, not_applicable
from smart_conformance.launcher import Launcher
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves


def _required_codes(launcher: Launcher) -> list[int]:
    """The 0-based positions of the recipe's required one-time-code steps among the sign-in steps."""
    return [n for n, step in enumerate(launcher.recipe.steps) if step.action == "totp" and not step.optional]


def _factors_seen(result: LaunchResult, missing: list[str]) -> str:
    """The launch in one redacted line: where it went, which sign-in steps ran and which did not, and why."""
    b = result.browser
    skipped = [s for s in b.steps_skipped if any(s.startswith(m) for m in missing)]
    return redact.text(f"{result.seen}; steps run: {', '.join(b.steps_run) or 'none'}; not run: "
                       f"{'; '.join(skipped) or ', '.join(missing) or 'none'}")


@pytest.mark.requirement("NIST-AAL2-01")
@proves(Fault.MFA_SKIPPED)
def test_second_factor_asked_before_code(launcher: Launcher) -> None:
    """The one-time code is asked for before the app gets a code: a server that lets the password alone through
    signs the member in on one factor, whatever the member enrolled in."""
    codes = _required_codes(launcher)
    if not codes:
        not_applicable("the target's login recipe declares no second factor (no required totp step in login.steps)")
    result = launcher.shared(require_token=False)
    b = result.browser
    if b.session_reused or not b.password_submitted:
        could_not_check(f"the shared launch typed no password ({result.outcome}: {result.why}): there is no fresh "
                        "sign-in to judge")
    if not b.redirected or not b.code:
        could_not_check(f"the shared launch ended without a code for the app ({result.outcome}: {result.why})")
    steps = result.spec.steps
    missing = [steps[n].describe() for n in codes if n >= len(b.step_pages) or not b.step_pages[n]]
    written = ", ".join(f"{steps[n].where}: {steps[n].describe()}" for n in codes)
    expect(not missing, expected=f"the one-time code page shown and the code typed ({written}) before the redirect "
                                 "with a code: the member's two factors both proven",
           actual=f"the redirect to the app carried a code after the password alone; the code step(s) never ran: "
                  f"{', '.join(missing)}", seen=_factors_seen(result, missing))
