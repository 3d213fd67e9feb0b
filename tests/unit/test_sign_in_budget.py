"""The sign-in budget: password sign-ins counted per target across processes, capped by login.max_sign_ins, and
reported in summary.json, summary.md and the console."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from smart_conformance import tally
from smart_conformance.browser import parse_recipe
from smart_conformance.checks import CouldNotCheck
from smart_conformance.config import ConfigError, load_target
from smart_conformance.launcher import Launcher
from smart_conformance.report.summary import render_console, write_summary
from smart_conformance.results import CheckResult, Outcome, RunResults

RECIPE = {"steps": [{"fill": {"selector": "#username", "value": "${member.username}"}},
                    {"fill": {"selector": "#password", "value": "${member.password}"}},
                    {"click": "button[type=submit]"}],
          "consent": {"approve": [{"click": "button[value=allow]"}]}}


class Sessions:
    """Stands in for the BrowserSession: which members have an identity-provider session kept."""

    def __init__(self, *members: str) -> None:
        self.members = set(members)

    def has_session(self, key: str) -> bool:
        return key in self.members


def launcher(cap: int | None, *sessions: str, made: int = 0, minimal: bool = False) -> Launcher:
    """A launcher with only what sign_in_plan reads (no browser, no server)."""
    made_launcher = object.__new__(Launcher)
    made_launcher.recipe = parse_recipe(RECIPE)
    made_launcher.target = SimpleNamespace(name="acme", source=Path("acme.yaml"))  # type: ignore[assignment]
    made_launcher.browser = Sessions(*sessions)  # type: ignore[assignment]
    made_launcher.sign_ins, made_launcher.max_sign_ins, made_launcher.minimal_sign_ins = made, cap, minimal
    made_launcher._making_shared = False
    return made_launcher


def test_a_launch_reuses_the_members_session_unless_it_asks_for_a_fresh_sign_in() -> None:
    plan = launcher(None, "primary").sign_in_plan("primary", fresh=False)
    assert plan == {"session_key": "primary", "reuse_session": True, "sign_in_steps": 3, "sign_in_refusal": ""}
    assert launcher(None, "primary").sign_in_plan("primary", fresh=True)["reuse_session"] is False
    assert launcher(None, "primary").sign_in_plan("other", fresh=False)["reuse_session"] is False  # no session yet


def test_beyond_the_cap_a_sign_in_is_could_not_check_naming_the_cap() -> None:
    assert launcher(2, made=1).sign_in_plan("primary", fresh=True)["sign_in_refusal"] == ""
    with pytest.raises(CouldNotCheck, match=r"login.max_sign_ins is 2 \(acme.yaml\).*fresh sign-in"):
        launcher(2, "primary", made=2).sign_in_plan("primary", fresh=True)
    with pytest.raises(CouldNotCheck, match="no session of members.other"):
        launcher(2, "primary", made=2).sign_in_plan("other", fresh=False)
    # reusing a session types no password: it may go on, but the browser is told to stop at a sign-in page
    plan = launcher(2, "primary", made=2).sign_in_plan("primary", fresh=False)
    assert plan["reuse_session"] and "login.max_sign_ins is 2" in plan["sign_in_refusal"]


def test_the_production_profile_keeps_the_budget_at_its_minimum() -> None:
    with pytest.raises(pytest.skip.Exception, match="production profile: the sign-in budget is at its minimum"):
        launcher(None, "primary", minimal=True).sign_in_plan("primary", fresh=True)
    assert launcher(None, minimal=True).sign_in_plan("primary", fresh=True)["reuse_session"] is False  # the first


def test_counts_cross_processes_as_deltas_and_sum_per_target() -> None:
    tally.drain()
    tally.add("a", tally.SIGN_INS)
    tally.add("a", tally.SIGN_INS)
    tally.add("b", tally.RATE_LIMITED)
    worker_one = tally.drain()
    assert worker_one == {"a": {"sign_ins": 2}, "b": {"rate_limited": 1}} and tally.drain() == {}
    total: dict[str, dict[str, int]] = {}
    tally.merge(total, json.loads(json.dumps(worker_one)))  # as it arrives on a report from a worker
    tally.merge(total, {"a": {"sign_ins": 1}})
    assert total == {"a": {"sign_ins": 3}, "b": {"rate_limited": 1}}


def test_sign_ins_are_in_summary_json_md_and_console(tmp_path: Path) -> None:
    result = CheckResult(target="acme", area="launch", check="test_x", nodeid="suites/launch/test_x.py::test_x",
                         outcome=Outcome.PASSED)
    run = RunResults(results=(result,), tallies={"acme": {"sign_ins": 7, "rate_limited": 2,
                                                          "rate_limit_wait_ms": 1500}})
    doc = write_summary(run, tmp_path)
    entry = json.loads((tmp_path / "summary.json").read_text())["targets"]["acme"]
    assert (entry["sign_ins"], entry["rate_limited"], entry["rate_limit_wait_s"]) == (7, 2, 1.5)
    assert doc["targets"]["acme"]["sign_ins"] == 7
    line = "7 password sign-in(s); 2 rate-limited answer(s) waited out (1.5 s)"
    assert line in (tmp_path / "summary.md").read_text()
    assert line in render_console(run)


def test_max_sign_ins_is_read_and_checked(tmp_path: Path) -> None:
    def target(extra: str) -> Any:
        file = tmp_path / "acme.yaml"
        file.write_text(f"""
name: acme
fhir_base_url: https://fhir.acme.example/r4
client:
  client_id: app
  client_secret: ${{ACME_SECRET}}
  redirect_uri: http://127.0.0.1:8765/callback
members:
  primary:
    username: member1
    password: ${{ACME_PASSWORD}}
    patient_id: "123"
scopes: {{full: launch/patient patient/*.read}}
login:
  steps: [{{click: "#go"}}]
{extra}""")
        return load_target(file, {"ACME_SECRET": "s3cret-value-1", "ACME_PASSWORD": "member-pass-1"})

    assert target("").login.max_sign_ins is None
    assert target("  max_sign_ins: 5").login.max_sign_ins == 5
    with pytest.raises(ConfigError, match="max_sign_ins"):
        target("  max_sign_ins: 0")
