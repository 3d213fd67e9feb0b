"""Error responses: how the authorization endpoint words a refusal it sends back to the app

RFC 6749 §4.1.2.1: an authorization request refused for any reason but an untrusted client or redirect_uri goes
back to the redirect_uri with an ``error`` from a defined list (OpenID Connect Core §3.1.2.6 adds its own codes), and
SMART App Launch names ``access_denied`` for a member who denies. The launch checks judge the protections (no code,
no token, the server decided); each error redirect the run saw is recorded, and the one check here, run after the
others of its target, judges their wording at once: a server that answers every refusal with a vendor code gets one
finding, naming each redirect, not one per protection.
"""

from __future__ import annotations

import pytest

from smart_conformance import refusals
from smart_conformance.launcher import Launcher
from smart_conformance.refusals import Family
from smart_conformance.smart.launch import LaunchResult
from smart_conformance.testplan import Fault, proves


@pytest.mark.reads_run
@pytest.mark.requirement("RFC6749-02", "SMART-AUTHZ-08")
@proves(Fault.AUTHORIZE_ERRORS_NONSTANDARD)
def test_authorize_error_responses(launcher: Launcher, denied_launch: LaunchResult) -> None:
    """Every error redirect of the run carries a defined error code; the member's Deny (made here if no check
    made it yet) carries access_denied."""
    refusals.judge_wording(Family.AUTHORIZE, launcher.authorization_endpoint, [], section="RFC 6749 §4.1.2.1",
                           defined="an error code from the defined list (access_denied when the member denies)")
