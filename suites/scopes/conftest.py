"""Launches and record ids shared by the scope and isolation checks: each launch is made once per target and worker.

The records are :class:`smart_conformance.members.MemberRecords`, learned with each member's own token (which makes
them the positive controls of the isolation refusals).
"""

from __future__ import annotations

import pytest

from smart_conformance.checks import could_not_check, not_applicable
from smart_conformance.config import Target
from smart_conformance.http import RecordingClient
from smart_conformance.launcher import Launcher
from smart_conformance.members import MemberRecords, records_of
from smart_conformance.smart.launch import LaunchResult


def _token_of(result: LaunchResult, what: str) -> str:
    if result.token is None:
        could_not_check(f"the {what} launch produced no token: " + "; ".join(result.problems))
    return str(result.token.access_token)


@pytest.fixture(scope="session")
def own_records(http: RecordingClient, target: Target, launch: LaunchResult) -> MemberRecords:
    """The primary member's data, found with the shared launch's token."""
    return records_of(http, target, launch.token.access_token, launch.token.patient or target.member.patient_id)


@pytest.fixture(scope="session")
def limited_launch(launcher: Launcher, target: Target) -> LaunchResult:
    """The primary member's launch with the target's limited scopes (scopes.limited)."""
    scope = target.scopes.get("limited")
    if not scope:
        not_applicable(f"target '{target.name}' gives no scopes.limited")
    result = launcher.launch(scope=scope)
    _token_of(result, "limited-scope")
    return result


@pytest.fixture(scope="session")
def other_launch(launcher: Launcher, target: Target) -> LaunchResult:
    """The second member's own full-scope launch (members.other): only used to learn their real record ids."""
    if "other" not in target.members:
        not_applicable(f"target '{target.name}' names no second member (members.other)")
    result = launcher.launch(member="other")
    _token_of(result, "second member's")
    return result


@pytest.fixture(scope="session")
def other_records(http: RecordingClient, target: Target, other_launch: LaunchResult) -> MemberRecords:
    patient = other_launch.token.patient or target.members["other"].patient_id
    if patient == target.member.patient_id:
        could_not_check("members.primary and members.other are the same patient; isolation needs two members")
    records = records_of(http, target, other_launch.token.access_token, patient)
    if not any(records.ids.values()):
        could_not_check(f"the second member (Patient/{patient}) has no Coverage or ExplanationOfBenefit to "
                        "probe isolation with; give members.other a member with claims")
    return records


@pytest.fixture(scope="session")
def representative_launch(launcher: Launcher, target: Target) -> LaunchResult:
    """The representative's launch (members.representative) with scopes.representative (or full)."""
    if "representative" not in target.members:
        not_applicable(f"target '{target.name}' names no authorized representative (members.representative)")
    result = launcher.launch(member="representative",
                             scope=target.scopes.get("representative") or target.scopes["full"])
    _token_of(result, "representative's")
    return result
