"""Fixtures of the token suite: a launch whose code is spent on purpose, a refresh chain that follows rotation."""

from __future__ import annotations

from typing import Any

import pytest

from smart_conformance.checks import could_not_check, not_applicable
from smart_conformance.launcher import RefreshChain


@pytest.fixture(scope="session")
def refresh_chain(launcher: Any) -> RefreshChain:
    """A launch of its own for the refresh checks (they must not disturb the shared launch's tokens)."""
    result = launcher.launch()
    if result.token is None:
        could_not_check("the launch for the refresh checks produced no token: " + "; ".join(result.problems))
    if not result.token.refresh_token:
        not_applicable("no refresh_token was issued with offline_access (see test_refresh_token_issued)")
    return RefreshChain(result.token.refresh_token, result.token.scope or "")

