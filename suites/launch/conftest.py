"""Launches shared by several checks of this suite (each made once per target and worker)."""

from __future__ import annotations

import pytest

from smart_conformance.launcher import Launcher
from smart_conformance.oauth import AWKWARD_STATE
from smart_conformance.smart.launch import LaunchResult


@pytest.fixture(scope="session")
def denied_launch(launcher: Launcher) -> LaunchResult:
    """The member presses Deny on the consent page (state carries special characters)."""
    return launcher.launch(scenario="deny", state=AWKWARD_STATE, exchange=False, fresh_sign_in=True)
