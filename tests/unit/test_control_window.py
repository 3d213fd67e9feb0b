"""A negative launch's positive control is fresh enough for the verdict it backs (issue 21 b for launches): the
shared launch vouches for a refusal only within CONTROL_WINDOW_S of being made, then it is taken again."""

from __future__ import annotations

from typing import Any

import pytest

from smart_conformance import launcher as launcher_mod
from smart_conformance.checks import CouldNotCheck
from smart_conformance.launcher import CONTROL_WINDOW_S, Launcher


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _launcher(clock: _Clock, renew: Any) -> Launcher:
    """A Launcher with only what control() reads; making the shared launch is ``renew``."""
    made = object.__new__(Launcher)
    made._shared = None
    made._control = None
    made._control_problem = None
    made._control_files = []
    made._shared_evidence = None  # type: ignore[assignment]
    made._shared_at = 0.0

    def renew_shared(reason: str | None) -> None:
        made._shared = renew(reason)
        made._shared_at = clock()

    def shared(*, require_token: bool = True) -> Any:
        if made._shared is None:
            renew_shared(None)
        return made._shared

    made._renew_shared = renew_shared  # type: ignore[method-assign]
    made.shared = shared  # type: ignore[method-assign]
    return made


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    tick = _Clock()
    monkeypatch.setattr(launcher_mod.time, "monotonic", tick)
    monkeypatch.setattr(launcher_mod, "current_evidence", lambda: None)
    return tick


def test_the_control_is_reused_within_its_window(clock: _Clock) -> None:
    reasons: list[str | None] = []
    made = _launcher(clock, lambda reason: reasons.append(reason) or object())
    first, _ = made.control()
    clock.now += CONTROL_WINDOW_S - 1
    again, problem = made.control()
    assert again is first and problem is None and reasons == [None]


def test_an_old_control_is_taken_again_and_says_why(clock: _Clock) -> None:
    reasons: list[str | None] = []
    made = _launcher(clock, lambda reason: reasons.append(reason) or object())
    first, _ = made.control()
    clock.now += CONTROL_WINDOW_S + 5
    second, problem = made.control()
    assert second is not first and problem is None
    assert reasons[1] is not None and "old" in reasons[1]


def test_a_control_that_cannot_be_taken_again_is_a_problem_not_the_old_one(clock: _Clock) -> None:
    calls = {"n": 0}

    def renew(reason: str | None) -> object:
        calls["n"] += 1
        if calls["n"] > 1:
            raise CouldNotCheck("the authorization endpoint answered HTTP 503")
        return object()

    made = _launcher(clock, renew)
    made.control()
    clock.now += CONTROL_WINDOW_S + 5
    control, problem = made.control()
    assert control is None and problem is not None and "503" in problem
