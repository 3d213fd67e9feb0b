"""One deviation, one finding (issue 21): findings with the same requirement, level and observed cause are one root
cause with the checks that saw it, in every report, the baseline and the exit status."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from smart_conformance import baseline, root_causes
from smart_conformance.checks import ConformanceFailure, Finding
from smart_conformance.report import allure_labels, findings_page, sarif, summary, writers
from smart_conformance.results import CheckResult, ExitCode, Outcome, RunResults

SHALL, SHOULD = "RFC6749-07", "HTTP-HYG-03"

# Actual texts as the suites wrote them in runs against the reference with faults on (two runs, two sets of ports).
SAME_CAUSE = [
    (("19 of 19 refusals deviate; first: test_token_error_responses[reference]: POST https://127.0.0.1:46669/auth/"
      "token → HTTP 403: HTTP 403 where 400 is defined; error='invalid_code' where invalid_grant is defined"),
     ("34 of 34 refusals deviate; first: test_token_error_responses[reference]: POST https://127.0.0.1:36765/auth/"
      "token → HTTP 403: HTTP 403 where 400 is defined; error='invalid_code' where invalid_grant is defined")),
    ("HTTP 202, Content-Location 'https://127.0.0.1:39743/fhir/bulk-status/PRChpdcBBogmLlZHw_bsKDtp'",
     "HTTP 202, Content-Location 'https://127.0.0.1:46197/fhir/bulk-status/9hHF5MK7j5j3IJ2bFRvTFZG1'"),
    (("the browser was redirected to http://127.0.0.1:8765/callback?code=***&state=WQXtTav9QrNwsAyuQSoOFzk4e5HAJOV_"
      "MCC6HyDj3rw&iss=https://127.0.0.1:43943/auth (parameters: code, iss, state)"),
     ("the browser was redirected to http://127.0.0.1:8765/callback?code=***&state=8WJGzEhd27zUCE_GfGBxwjZ0bxff4LNQ"
      "ZwfQKFMA0tA&iss=https://127.0.0.1:43455/auth (parameters: code, iss, state)")),
    ("Date: Sat, 05 Dec 2026 11:47:34 GMT (10799 s ahead of the harness clock)",
     "Date: Sat, 05 Dec 2026 20:11:53 GMT (10800 s ahead of the harness clock)"),
    ("127.0.0.1:38075 (FHIR base, token_endpoint, issuer): expired 2026-12-04 08:45 UTC",
     "127.0.0.1:35995 (FHIR base, token_endpoint, issuer): expired 2026-12-04 17:11 UTC"),
    ("opted_out member Patient/pa-oscar in https://127.0.0.1:34287/fhir/bulk-files/-JH4CN3bFLTV7OeLZEyqGzmG/Patient.ndjson",
     "opted_out member Patient/pa-oscar in https://127.0.0.1:34287/fhir/bulk-files/cDDPygO0QUTE-aBsWj_NFxCp/Patient.ndjson"),
    ("https://127.0.0.1:40593/auth/login?req=GODToo6bfdZlUCM93xOP1jRSOmUb1gYbOnL1JoWlpm8: X-Frame-Options (absent)",
     "https://127.0.0.1:41473/auth/login?req=HFR-7BbXFH__A1PJ11FBwMKh28HlvZOzRhJ18LQW95I: X-Frame-Options (absent)"),
    ("HTTP 200 text/html: <scx03222eed> became an element of the page",
     "HTTP 200 text/html: <scxe1de802a> became an element of the page"),
    ("sub 'b07838e3141725fb363ef367df9d52ba' then '927305cf84deaea2b195853f8c53aa5b'",
     "sub '5f0c1c7e-aaaa-4bbb-8ccc-0123456789ab' then '0f0c1c7e-aaaa-4bbb-8ccc-0123456789ab'"),
    ("exp 1796459774 (now 1796460375)", "exp 1796459000 (now 1796461000)"),
    ("ExplanationOfBenefit/pa-ann-eob-1 lastUpdated 2024-09-26T08:57:12+00:00",
     "ExplanationOfBenefit/pa-ann-eob-2 lastUpdated 2025-10-31T08:57:12+00:00"),
    ("a client trusting the supplied CA bundle /tmp/pytest-of-root/pytest-104/popen-gw2/tls-suite0/pki/ca.pem rejects",
     "a client trusting the supplied CA bundle /tmp/smart-reference-zbk_kn/ca.pem rejects"),
    ("the refusal carried a Bundle with 12 resources (Coverage, Patient)",
     "the refusal carried a Bundle with 3 resources (Coverage, Patient)"),
    ("HTTP 200 with a token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
     "HTTP 200 with a token eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJiIn0.c2lnMg"),
]

DIFFERENT_CAUSES = [
    ("HTTP 403 {\"error\": \"unauthorized_client\", \"error_description\": \"grant_type is required\"}",
     "HTTP 400 {\"error\": \"unauthorized_client\", \"error_description\": \"grant_type is required\"}"),
    ("HTTP 400 error='invalid_client'", "HTTP 400 error='invalid_grant'"),
    ("127.0.0.1:43315 (FHIR base): accepts TLSv1, TLSv1.1", "127.0.0.1:43315 (FHIR base): accepts SSLv3"),
    ("refuses TLS 1.3 (highest version: TLSv1.2)", "refuses TLS 1.2 (TLS 1.3: accepted)"),
    ("HTTP 200 with Coverage/cov-bob (patient pat-bob)", "HTTP 200 with Coverage/cov-dylan (patient pat-dylan)"),
    ("Access-Control-Allow-Origin: null with Access-Control-Allow-Credentials: true",
     "Access-Control-Allow-Origin: http://127.0.0.1:43741 with Access-Control-Allow-Credentials: true"),
    ("HTTP 303 Location: https://smart-conformance-attacker.example/landing", "HTTP 303 Location: https://other.example/x"),
]


@pytest.mark.parametrize(("one", "other"), SAME_CAUSE)
def test_incidental_values_do_not_split_a_cause(one: str, other: str) -> None:
    assert root_causes.normalise(one) == root_causes.normalise(other)
    assert root_causes.normalise(root_causes.normalise(one)) == root_causes.normalise(one)


@pytest.mark.parametrize(("one", "other"), DIFFERENT_CAUSES)
def test_different_behaviours_stay_apart(one: str, other: str) -> None:
    assert root_causes.normalise(one) != root_causes.normalise(other)


def test_what_a_reader_needs_survives_normalising() -> None:
    text = root_causes.normalise("POST https://127.0.0.1:46669/auth/token → HTTP 403: error='invalid_code' "
                                 "(RFC 6750 §3), charset=utf-8, TLSv1.2")
    assert text == ("POST https://127.0.0.1:<port>/auth/token → HTTP 403: error='invalid_code' (RFC 6750 §3), "
                    "charset=utf-8, TLSv1.2")


def result(check: str, actual: str, *, ids: tuple[str, ...] = (SHALL,), target: str = "acme",
           cause: str | None = None, expected: str = "HTTP 400 invalid_grant") -> CheckResult:
    """A result as results.result_of makes it from a real failure."""
    exc = ConformanceFailure(expected=expected, actual=actual, requirement_ids=ids, cause=cause)
    return CheckResult(target=target, area="tokens", check=check, nodeid=f"tokens/test_x.py::{check}[{target}]",
                       outcome=Outcome.WARNING if exc.warning else Outcome.FAILED, requirements=ids, violated=ids,
                       level=exc.level, message=str(exc), findings=exc.findings)


def test_same_requirement_and_cause_is_one_finding_with_both_checks() -> None:
    run = RunResults(results=(result("test_pkce", "HTTP 403 error='invalid_code' at https://127.0.0.1:4001/t"),
                              result("test_single_use", "HTTP 403 error='invalid_code' at https://127.0.0.1:4001/t")))
    (cause,) = run.root_causes()["acme"]
    assert cause.nodeids == ["tokens/test_x.py::test_pkce[acme]", "tokens/test_x.py::test_single_use[acme]"]
    assert cause.key == "RFC6749-07 (SHALL): HTTP 403 error='invalid_code' at https://127.0.0.1:<port>/t"


def test_same_requirement_different_status_is_two_findings() -> None:
    run = RunResults(results=(result("test_pkce", "HTTP 403 error='invalid_grant'"),
                              result("test_single_use", "HTTP 401 error='invalid_grant'")))
    assert len(run.root_causes()["acme"]) == 2


def test_shall_before_should_then_by_how_many_checks_saw_it() -> None:
    run = RunResults(results=(result("test_hsts", "no HSTS", ids=(SHOULD,)),
                              result("test_a", "HTTP 200 with tokens"),
                              result("test_b", "HTTP 500"), result("test_c", "HTTP 500")))
    causes = run.root_causes()["acme"]
    assert [(c.level, c.cause, len(c.seen)) for c in causes] == [
        ("SHALL", "HTTP 500", 2), ("SHALL", "HTTP 200 with tokens", 1), ("SHOULD NOT", "no HSTS", 1)]
    assert root_causes.headline(causes) == "3 findings (2 SHALL, 1 SHOULD)"


def test_an_explicit_cause_is_kept_and_crosses_processes() -> None:
    one = result("test_a", "HTTP 403 {\"error\": \"invalid_code\", \"id\": 1}", cause="403 invalid_code")
    two = result("test_b", "HTTP 403 with a body", cause="403 invalid_code")
    again = CheckResult.from_dict(json.loads(json.dumps(one.as_dict())))
    assert again == one and again.findings[0].cause == "403 invalid_code"
    assert Finding.from_dict(one.findings[0].as_dict()).cause == "403 invalid_code"
    (cause,) = RunResults(results=(again, two)).root_causes()["acme"]
    assert cause.cause == "403 invalid_code" and len(cause.seen) == 2


def test_every_failure_message_carries_its_root_cause_line() -> None:
    one = result("test_a", "HTTP 403 error='invalid_code' at https://127.0.0.1:4001/t")
    (cause,) = RunResults(results=(one,)).root_causes()["acme"]
    assert f"  Root cause: {cause.key}" in one.message.splitlines()


def test_summary_opens_with_the_findings_to_fix(tmp_path: Path) -> None:
    run = RunResults(results=(result("test_hsts", "no HSTS", ids=(SHOULD,)),
                              result("test_pkce", "HTTP 403 error='invalid_code'"),
                              result("test_single_use", "HTTP 403 error='invalid_code'")))
    writers.write_reports(run, reports=tmp_path, allure=None)
    md = (tmp_path / "summary.md").read_text()
    assert md.index("## Findings") < md.index("## Target `acme`")
    assert "2 findings (1 SHALL, 1 SHOULD)" in md
    first = md[md.index("## Findings"):md.index("## Target")]
    assert first.index("RFC6749-07") < first.index("HTTP-HYG-03")
    assert "`test_pkce`" in first and "`test_single_use`" in first
    doc = json.loads((tmp_path / "summary.json").read_text())
    section = doc["targets"]["acme"]
    assert section["root_causes"][0]["checks"] == ["tokens/test_x.py::test_pkce[acme]",
                                                                "tokens/test_x.py::test_single_use[acme]"]
    assert section["finding_counts"] == {"findings": 2, "SHALL": 1, "SHOULD": 1, "expected": 0}
    assert len(section["findings"]) == 3  # per check, as before: readers of summary.json rely on it
    results = json.loads((tmp_path / "results.sarif").read_text())["runs"][0]["results"]
    assert len(results) == 2
    assert results[0]["properties"]["checks"] == section["root_causes"][0]["checks"]
    console = summary.render_console(run)
    assert "2 findings (1 SHALL, 1 SHOULD)" in console and "2 checks" in console


def test_sarif_gives_one_result_per_root_cause() -> None:
    rows = [result(f"test_{n}", "HTTP 200 with tokens") for n in range(3)]
    doc = sarif.build(rows)
    (only,) = doc["runs"][0]["results"]
    assert len(only["relatedLocations"]) == 3 and only["ruleId"] == SHALL


def test_allure_categories_group_the_checks_of_one_root_cause(tmp_path: Path) -> None:
    one, two = result("test_a", "HTTP 403 error='invalid_code'"), result("test_b", "HTTP 403 error='invalid_code'")
    run = RunResults(results=(one, two, result("test_hsts", "no HSTS", ids=(SHOULD,))), targets={"acme": ""})
    allure_labels.write_run_files(tmp_path, run)
    categories = json.loads((tmp_path / "categories.json").read_text())
    first = categories[0]
    assert first["name"] == "SHALL · RFC6749-07 (SHALL): HTTP 403 error='invalid_code'"
    message = f"AssertionError: {one.message}"  # as allure-pytest writes it
    assert re.fullmatch(first["messageRegex"], message) and re.fullmatch(first["messageRegex"], two.message)
    assert not re.fullmatch(first["messageRegex"], result("test_c", "HTTP 401").message)
    assert [c["name"] for c in categories[-4:]] == [c["name"] for c in allure_labels.CATEGORIES]
    (html_rule, _) = allure_labels.html_root_cause_categories(categories)
    assert html_rule["matchers"]["message"] == r"\n\s*Root cause: RFC6749-07 \(SHALL\): HTTP 403 error='invalid_code'(\n|$)"
    (page,) = findings_page.collect(run)
    assert [len(f.checks) for f in page.findings] == [2, 1]


def write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "baseline.yaml"
    file.write_text(text)
    return file


def test_a_baseline_names_a_root_cause_and_the_checks_that_saw_only_it_do_not_count(tmp_path: Path) -> None:
    base = baseline.load(write(tmp_path, (
        "- {target: acme, requirement: RFC6749-07, cause: \"HTTP 403 error='invalid_code'\", reason: JIRA-7}\n")))
    both = (result("test_pkce", "HTTP 403 error='invalid_code'"), result("test_single_use", "HTTP 403 error='invalid_code'"))
    run = RunResults(results=both, baseline=base)
    assert run.exit_code is ExitCode.OK
    (cause,) = run.root_causes()["acme"]
    assert cause.baseline_reason == "JIRA-7"
    doc = summary.build(run.results, strict=False, baseline=base)
    assert doc["exit_code"] == 0 and all(f["expected"] for f in doc["targets"]["acme"]["findings"])
    assert "EXPECTED" in summary.render_markdown(doc).split("## Target")[0]
    other = RunResults(results=(*both, result("test_x", "HTTP 401")), baseline=base)
    assert other.exit_code is ExitCode.FAILED


def test_a_root_cause_entry_that_no_check_saw_is_stale(tmp_path: Path) -> None:
    base = baseline.load(write(tmp_path, "- {target: acme, requirement: [RFC6749-07], cause: HTTP 418, reason: X}\n"))
    run = RunResults(results=(result("test_a", "HTTP 403"),), baseline=base)
    assert run.exit_code is ExitCode.FAILED
    _, unmet = baseline.apply(run.rows(), base)
    assert [u["outcome"] for u in unmet] == ["not seen"]


def test_baselines_by_check_still_work_and_mixed_entries_load(tmp_path: Path) -> None:
    base = baseline.load(write(tmp_path, (
        "- {target: acme, check: test_pkce, reason: JIRA-1}\n"
        "- {target: acme, requirement: HTTP-HYG-03, cause: no HSTS, reason: JIRA-2}\n")))
    run = RunResults(results=(result("test_pkce", "HTTP 500"), result("test_hsts", "no HSTS", ids=(SHOULD,))),
                     baseline=base, strict=True)
    assert run.exit_code is ExitCode.OK
    assert RunResults(results=run.results, strict=True).exit_code is ExitCode.FAILED


def test_exit_codes_from_findings() -> None:
    shall, should = result("test_a", "HTTP 500"), result("test_h", "no HSTS", ids=(SHOULD,))
    broken = CheckResult(target="acme", area="tls", check="test_x", nodeid="tls/t.py::test_x[acme]",
                         outcome=Outcome.BROKEN)
    assert RunResults(results=(shall, should, broken)).exit_code is ExitCode.FAILED
    assert RunResults(results=(should,)).exit_code is ExitCode.OK
    assert RunResults(results=(should,), strict=True).exit_code is ExitCode.FAILED
    assert RunResults(results=(should, broken)).exit_code is ExitCode.BROKEN


@pytest.mark.parametrize(("text", "key"), [
    ("- {target: acme, requirement: X, reason: r}\n", "[0].cause"),
    ("- {target: acme, requirement: X, cause: c, check: test_a, reason: r}\n", "[0].cause"),
    ("- {target: acme, requirement: [], cause: c, reason: r}\n", "[0].requirement"),
])
def test_bad_root_cause_entries_name_their_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(baseline.BaselineError) as exc:
        baseline.load(write(tmp_path, text))
    assert key in str(exc.value)
