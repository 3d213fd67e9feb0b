"""Typed results and failures as data (issue 11): every failed expectation of a check is reported, with its own ids.

A check with several independent expectations collects them (``checks.expectations``); the outcome is failed when
any item breaks a SHALL, a warning when every item is SHOULD/MAY. The result of a check is a ``CheckResult`` whose
level is a field; the report writers are registered in one place and read one ``RunResults``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smart_conformance import checks
from smart_conformance.checks import (
    ConformanceFailure,
    ConformanceFailures,
    CouldNotCheck,
    MixedLevels,
    expectations,
)
from smart_conformance.report import sarif, summary, writers
from smart_conformance.results import CheckResult, ExitCode, Outcome, RunResults

SHALL_A, SHALL_B, SHOULD = "SMART-TOKEN-03", "RFC6749-07", "HTTP-HYG-03"


def test_every_failed_expectation_is_reported_with_its_own_ids() -> None:
    with checks.citing(SHALL_A, SHALL_B), pytest.raises(ConformanceFailures) as caught, expectations() as check:
        check.expect(False, expected="Content-Type application/json", actual="text/html", requirement=SHALL_B)
        assert check.expect(True, expected="x", actual="y")
        check.expect(False, expected="token_type 'Bearer'", actual="token_type 'mac'", requirement=SHALL_A)
    group = caught.value
    assert [f.requirements for f in group.findings] == [(SHALL_B,), (SHALL_A,)]
    assert [f.expected for f in group.findings] == ["Content-Type application/json", "token_type 'Bearer'"]
    assert group.level == "SHALL" and not group.warning
    assert group.requirement_ids == (SHALL_B, SHALL_A)
    text = str(group)
    assert text.startswith("2 expectations failed: RFC6749-07 (SHALL); SMART-TOKEN-03 (SHALL)")
    assert "[1/2] RFC6749-07 (SHALL)" in text and "[2/2] SMART-TOKEN-03 (SHALL)" in text


def test_group_fails_if_any_item_is_shall_and_only_warns_if_none_is() -> None:
    with checks.citing(SHALL_A, SHOULD), pytest.raises(ConformanceFailures) as mixed, expectations() as check:
        check.expect(False, expected="a", actual="b", requirement=SHOULD)
        check.expect(False, expected="c", actual="d", requirement=SHALL_A)
    assert not mixed.value.warning and mixed.value.level == "SHALL"
    with checks.citing(SHOULD), pytest.raises(ConformanceFailures) as should, expectations() as check:
        check.expect(False, expected="a", actual="b")
        check.expect(False, expected="c", actual="d")
    assert should.value.warning and should.value.level == "SHOULD NOT"
    assert str(should.value).startswith("[SHOULD NOT] 2 expectations failed")  # Allure's SHOULD category


def test_one_failure_stays_a_plain_failure() -> None:
    with checks.citing(SHALL_A), pytest.raises(ConformanceFailure) as caught, expectations() as check:
        check.expect(False, expected="a", actual="b")
    assert type(caught.value) is ConformanceFailure and len(caught.value.findings) == 1


def test_a_hard_failure_inside_the_block_joins_those_recorded() -> None:
    with checks.citing(SHALL_A), pytest.raises(ConformanceFailures) as caught, expectations() as check:
        check.expect(False, expected="a", actual="b")
        checks.fail(expected="c", actual="d")
    assert [f.expected for f in caught.value.findings] == ["a", "c"]


def test_recorded_failures_win_over_a_later_could_not_check_but_not_over_a_harness_bug() -> None:
    with checks.citing(SHALL_A), pytest.raises(ConformanceFailure), expectations() as check:
        check.expect(False, expected="a", actual="b")
        checks.could_not_check("the second launch failed")
    with checks.citing(SHALL_A), pytest.raises(CouldNotCheck), expectations():
        checks.could_not_check("nothing recorded: broken as before")
    with checks.citing(SHALL_A, SHOULD), pytest.raises(MixedLevels), expectations() as check:
        check.expect(False, expected="a", actual="b", requirement=SHALL_A)
        check.expect(False, expected="c", actual="d")  # not narrowed in a mixed-level check


def grouped_result(outcome: Outcome = Outcome.FAILED) -> CheckResult:
    with checks.citing(SHALL_A, SHALL_B), pytest.raises(ConformanceFailures) as caught, expectations() as check:
        check.expect(False, expected="Content-Type application/json", actual="text/html", requirement=SHALL_B)
        check.expect(False, expected="token_type 'Bearer'", actual="token_type 'mac'", requirement=SHALL_A)
    exc = caught.value
    return CheckResult(target="acme", area="tokens", check="test_token_response_fields",
                       nodeid="tokens/test_token_response.py::test_token_response_fields[acme]", outcome=outcome,
                       requirements=(SHALL_A, SHALL_B), violated=exc.requirement_ids, level=exc.level,
                       message=str(exc), doc="access_token and token_type", findings=exc.findings)


def test_check_result_round_trips_through_its_json_form() -> None:
    result = grouped_result()
    again = CheckResult.from_dict(json.loads(json.dumps(result.as_dict())))
    assert again == result and again.outcome is Outcome.FAILED and again.level == "SHALL"


def test_summary_sarif_and_console_show_each_item_with_its_requirement(tmp_path: Path) -> None:
    run = RunResults(results=(grouped_result(),))
    doc = summary.build(run.results, strict=False)
    (finding,) = doc["targets"]["acme"]["findings"]
    assert finding["level"] == "SHALL"
    assert [[r["id"] for r in i["requirements"]] for i in finding["items"]] == [[SHALL_B], [SHALL_A]]
    md = summary.render_markdown(doc)
    assert "2 expectations failed:" in md and "Actual: token_type 'mac'" in md
    messages = {r["ruleId"]: r["message"]["text"] for r in sarif.build(run.results)["runs"][0]["results"]}
    assert "Expected: Content-Type application/json" in messages[SHALL_B]
    assert "Expected: token_type 'Bearer'" in messages[SHALL_A]
    assert "1. [RFC6749-07] (SHALL)" in summary.render_console(run)
    assert run.exit_code is ExitCode.FAILED


def test_warning_only_run_exits_ok_unless_strict() -> None:
    warned = CheckResult(target="acme", area="tls", check="test_hsts", nodeid="tls/t.py::test_hsts[acme]",
                         outcome=Outcome.WARNING, requirements=("TLS-06",), level="SHOULD")
    broken = CheckResult(target="acme", area="tls", check="test_x", nodeid="tls/t.py::test_x[acme]",
                         outcome=Outcome.BROKEN, requirements=("TLS-06",))
    assert RunResults(results=(warned,)).exit_code is ExitCode.OK
    assert RunResults(results=(warned,), strict=True).exit_code is ExitCode.FAILED
    assert RunResults(results=(warned, broken)).exit_code is ExitCode.BROKEN


def test_every_registered_writer_writes_into_its_folder(tmp_path: Path) -> None:
    run = RunResults(results=(grouped_result(),), targets={"acme": "https://fhir.example.org/r4"})
    assert {w.destination for w in writers.WRITERS} <= {"reports", "allure"}
    writers.write_reports(run, reports=tmp_path / "r", allure=tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["results.sarif", "summary.json", "summary.md"]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["exit_code"] == 1
    env = (tmp_path / "a" / "environment.properties").read_text()
    assert "targets=acme" in env and "target.acme.fhir_base_url=https://fhir.example.org/r4" in env
    assert (tmp_path / "a" / "categories.json").is_file()


def test_a_plain_assert_in_harness_code_is_broken_never_a_finding() -> None:
    """A harness invariant that does not hold (``assert signer is not None``) is the harness's bug, not the payer's:
    only a ConformanceFailure (expect/fail) can make a check failed or warning."""
    from smart_conformance.results import classify

    for exc, outcome in ((AssertionError("harness invariant"), Outcome.BROKEN),
                         (CouldNotCheck("no control"), Outcome.BROKEN),
                         (ConformanceFailure(expected="x", actual="y", requirement_ids=(SHALL_A,)), Outcome.FAILED)):
        try:
            raise exc
        except BaseException:  # noqa: BLE001
            info = pytest.ExceptionInfo.from_current()
        assert classify(info) is outcome, type(exc).__name__
