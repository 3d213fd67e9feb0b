"""Reporting from in-memory result records: attestations, the Safety Checklist matrix, SARIF, baselines, run diffs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from smart_conformance import paths, requirements
from smart_conformance.report import attestations, baseline, checklist, sarif, summary

TODAY = dt.date(2026, 6, 1)
SAFETY_IDS = [i for i in requirements.catalog() if i.startswith("SAFETY-")]


def rec(check: str, outcome: str, reqs: list[str], *, target: str = "acme", violated: list[str] | None = None,
        message: str = "", area: str = "discovery") -> dict[str, Any]:
    return {"target": target, "area": area, "check": check, "nodeid": f"{area}/test_x.py::{check}[{target}]",
            "requirements": reqs, "violated": violated or reqs, "outcome": outcome, "message": message,
            "doc": f"{check} does its thing"}


FAIL_MSG = ("SMART-DISC-08 (SHALL NOT)\n  Requirement: SMART-DISC-08 — no plain\n"
            "  Expected: 'plain' absent from code_challenge_methods_supported\n"
            "  Actual:   code_challenge_methods_supported = [\"S256\", \"plain\"]\n  Spec: https://x\n")

RESULTS = [
    rec("test_pkce_s256_only", "failed", ["SMART-DISC-08", "SMART-PKCE-02"], violated=["SMART-DISC-08"],
        message=FAIL_MSG),
    rec("test_errors_are_operation_outcome", "warning", ["SAFETY-41", "FHIR-HTTP-02"], violated=["SAFETY-41"],
        message="[SHOULD] x\n  Expected: an OperationOutcome\n  Actual:   text/html\n", area="fhir_security"),
    rec("test_json_supported", "passed", ["SAFETY-38"], area="fhir_security"),
    rec("test_unreachable_thing", "broken", ["SAFETY-39"], message="could not check: CouldNotCheck: down",
        area="fhir_security"),
]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


ATTESTATIONS = """\
version: 1
target: acme
max_age_days: 180
attestations:
  - requirement: SAFETY-23
    answer: "no"
    by: Pat Privacy (privacy officer)
    date: 2026-05-01
    evidence: https://wiki.example.org/audit
  - requirement: SAFETY-36
    answer: "yes"
    by: Sam Security
    date: 2025-10-01
    evidence: ticket SEC-12
    note: due for review
  - requirement: SAFETY-41
    answer: "yes"
    by: Sam Security
    date: 2026-05-01
    evidence: automated as well
  - requirement: SAFETY-99
    answer: not-applicable
    by: Sam Security
    date: 2026-05-01
    evidence: typo in the id
"""


# ---------------------------------------------------------------------------------------------------------------------
# Attestations

def test_attestation_schema_is_valid_draft_2020_12() -> None:
    schema = json.loads(paths.schema_path("attestations.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


def test_attestations_load_flags_stale_and_unknown(tmp_path: Path) -> None:
    loaded = attestations.load(write(tmp_path, "a.yaml", ATTESTATIONS), target="acme", today=TODAY)
    assert loaded.max_age_days == 180 and set(loaded.items) == {"SAFETY-23", "SAFETY-36", "SAFETY-41", "SAFETY-99"}
    assert loaded.stale == ["SAFETY-36"]  # 243 days > 180
    assert loaded.unknown == ["SAFETY-99"]
    assert loaded.items["SAFETY-23"].as_dict() == {
        "requirement": "SAFETY-23", "answer": "no", "by": "Pat Privacy (privacy officer)", "date": "2026-05-01",
        "evidence": "https://wiki.example.org/audit", "note": "", "stale": False}


def test_attestations_default_max_age_is_365_days(tmp_path: Path) -> None:
    text = ATTESTATIONS.replace("max_age_days: 180\n", "")
    loaded = attestations.load(write(tmp_path, "a.yaml", text), today=TODAY)
    assert loaded.max_age_days == 365 and loaded.stale == []
    assert attestations.load(write(tmp_path, "b.yaml", text), today=dt.date(2027, 5, 2)).stale == [
        "SAFETY-23", "SAFETY-36", "SAFETY-41", "SAFETY-99"]


@pytest.mark.parametrize(("change", "key", "words"), [
    (("answer: \"no\"", "answer: maybe"), "attestations[0].answer", "use one of yes, no, not-applicable"),
    (("answer: \"no\"", "answer: no"), "attestations[0].answer", "quote it"),
    (("    by: Pat Privacy (privacy officer)\n", ""), "attestations[0].by", "required key is missing"),
    (("date: 2026-05-01", "date: 01/05/2026"), "attestations[0].date", "YYYY-MM-DD"),
    (("date: 2026-05-01", "date: 2026-02-30"), "attestations[0].date", "not a calendar date"),
    (("date: 2026-05-01", "date: 2026-07-01"), "attestations[0].date", "is in the future"),
    (("evidence: ticket SEC-12", "evidence: ticket SEC-12\n    evidense: x"), "attestations[1].evidense",
     "unknown key 'evidense'"),
    (("version: 1", "version: 2"), "version", "write 'version: 1'"),
    (("target: acme", "target: other"), "target", "not 'acme'"),
    (("    evidence: automated as well\n", ("    evidence: automated as well\n  - requirement: SAFETY-23\n"
      "    answer: \"yes\"\n    by: x\n    date: 2026-01-01\n    evidence: y\n")), "attestations[3].requirement",
     "answered twice"),
])
def test_attestation_errors_are_one_line_naming_file_key_and_fix(tmp_path: Path, change: tuple[str, str], key: str,
                                                                 words: str) -> None:
    file = write(tmp_path, "acme-attest.yaml", ATTESTATIONS.replace(*change, 1))
    with pytest.raises(attestations.AttestationError) as exc:
        attestations.load(file, target="acme", today=TODAY)
    text = str(exc.value)
    assert "\n" not in text and text.startswith(f"{file}: {key}: ") and "Fix: " in text and words in text, text


def test_missing_attestation_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(attestations.AttestationError, match=r"not found\. Fix: fix the target's 'attestations' path"):
        attestations.load(tmp_path / "nope.yaml")


def test_reference_target_attestations_are_wired_and_valid() -> None:
    path = attestations.reference_attestations_path()
    assert path == (paths.fixtures_dir() / "attestations" / "reference.yaml").resolve()
    loaded = attestations.load(path, target="reference")
    assert loaded.unknown == [] and len(loaded.items) >= 5
    catalog = requirements.catalog()
    for rid in loaded.items:
        assert catalog[rid].verification == "attestation", rid  # only items the harness cannot check itself
    assert loaded.items["SAFETY-23"].answer == "no"  # no AuditEvent in the reference server


# ---------------------------------------------------------------------------------------------------------------------
# Safety Checklist matrix

def test_checklist_statuses_and_counts(tmp_path: Path) -> None:
    att = attestations.load(write(tmp_path, "a.yaml", ATTESTATIONS), target="acme", today=TODAY)
    doc = checklist.build(RESULTS, att)
    rows = {row["id"]: row for row in doc["items"]}
    assert list(rows) == sorted(SAFETY_IDS, key=lambda i: int(i.split("-")[1]))
    assert rows["SAFETY-41"]["status"] == "automated"  # automated wins over an attestation
    assert rows["SAFETY-41"]["checks"] == [{"check": "test_errors_are_operation_outcome",
                                           "nodeid": RESULTS[1]["nodeid"], "outcome": "warning"}]
    assert rows["SAFETY-38"]["status"] == "automated" and rows["SAFETY-39"]["checks"][0]["outcome"] == "broken"
    assert rows["SAFETY-23"]["status"] == "attested" and rows["SAFETY-23"]["attestation"]["by"].startswith("Pat")
    assert rows["SAFETY-36"]["attestation"]["stale"] is True
    assert rows["SAFETY-01"]["status"] == "open" and "attestation" not in rows["SAFETY-01"]
    c = doc["counts"]
    # SAFETY-17 and SAFETY-30 through their catalog evidenced_by (FHIR-HTTP-02, SMART-PKCE-02), not a citation
    assert rows["SAFETY-17"]["checks"][0]["via"] == ["FHIR-HTTP-02"] and rows["SAFETY-17"]["result"] == "warning"
    assert rows["SAFETY-30"]["result"] == "failed" and rows["SAFETY-38"]["result"] == "passed"
    assert rows["SAFETY-39"]["result"] == "could not check" and "result" not in rows["SAFETY-01"]
    assert (c["automated"], c["attested"], c["stale"]) == (5, 2, 1)
    assert doc["results"] == {"failed": 1, "warning": 2, "could not check": 1, "passed": 1}
    assert c["automated"] + c["attested"] + c["open"] == c["total"] == len(SAFETY_IDS)
    assert doc["unknown_ids"] == ["SAFETY-99"] and doc["stale"] == ["SAFETY-36"]
    md = "\n".join(checklist.render_markdown(doc))
    assert "attested **yes** (STALE)" in md and "Pat Privacy (privacy officer), 2026-05-01" in md
    assert "SAFETY-99" in md and "automated: 1 warning" in md


def test_checklist_without_attestations_is_automated_or_open() -> None:
    doc = checklist.build(RESULTS)
    assert doc["counts"]["attested"] == 0 and doc["counts"]["automated"] == 5


def test_checklist_item_needs_a_check_that_ran() -> None:
    """Only not-applicable evidence leaves the item open; one failure among passes fails it."""
    doc = checklist.build([rec("test_a", "skipped", ["SAFETY-38"]), rec("test_b", "passed", ["TLS-03"]),
                           rec("test_c", "failed", ["TLS-05"])])
    rows = {row["id"]: row for row in doc["items"]}
    assert rows["SAFETY-38"]["status"] == "open" and rows["SAFETY-38"]["checks"][0]["outcome"] == "skipped"
    assert rows["SAFETY-27"]["result"] == "failed" and [c["outcome"] for c in rows["SAFETY-27"]["checks"]] == [
        "passed", "failed"]
    assert "SAFETY-27" not in doc["black_box_open"] and "SAFETY-38" in doc["black_box_open"]


def test_checklist_allure_page(tmp_path: Path) -> None:
    doc = checklist.build(RESULTS)
    checklist.write_allure(tmp_path, {"targets": {"acme": {"checklist": doc}}})
    result = json.loads(next(tmp_path.glob("*-result.json")).read_text())
    assert result["status"] == "unknown" and result["labels"][0] == {"name": "epic", "value": checklist.TITLE}
    page = (tmp_path / result["attachments"][0]["source"]).read_text()
    assert "SAFETY-30" in page and "<code>test_pkce_s256_only</code>: failed" in page
    assert "safety.checklist.acme=41 items: 5 automated" in (tmp_path / "environment.properties").read_text()
    assert "stale" not in doc["counts"]


# ---------------------------------------------------------------------------------------------------------------------
# SARIF

# The parts of the SARIF 2.1.0 schema (OASIS) that code-scanning uploads rely on, restated offline.
SARIF_SUBSET = {
    "type": "object", "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"}, "$schema": {"type": "string", "format": "uri"},
        "runs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["tool", "results"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {"driver": {
                    "type": "object", "required": ["name", "rules"],
                    "properties": {"name": {"type": "string"}, "rules": {"type": "array", "items": {
                        "type": "object", "required": ["id", "shortDescription", "helpUri", "properties"],
                        "properties": {"id": {"type": "string"},
                                       "shortDescription": {"type": "object", "required": ["text"]},
                                       "helpUri": {"type": "string", "format": "uri"},
                                       "defaultConfiguration": {"type": "object", "properties": {
                                           "level": {"enum": ["none", "note", "warning", "error"]}}},
                                       "properties": {"type": "object", "required": ["level"]}}}}}}}},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["ruleId", "level", "message", "locations"],
                    "properties": {
                        "ruleId": {"type": "string"}, "ruleIndex": {"type": "integer", "minimum": 0},
                        "level": {"enum": ["none", "note", "warning", "error"]},
                        "message": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
                        "locations": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
                            "physicalLocation": {"type": "object", "required": ["artifactLocation"]},
                            "logicalLocations": {"type": "array", "items": {
                                "type": "object", "required": ["fullyQualifiedName"]}}}}},
                        "suppressions": {"type": "array", "items": {
                            "type": "object", "required": ["kind"],
                            "properties": {"kind": {"enum": ["inSource", "external"]},
                                           "status": {"enum": ["accepted", "underReview", "rejected"]}}}},
                    }}},
            }}},
    },
}


def test_sarif_structure_rules_and_results() -> None:
    doc = sarif.build(RESULTS)
    jsonschema.Draft7Validator(SARIF_SUBSET, format_checker=jsonschema.FormatChecker()).validate(doc)
    run = doc["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "smart-payer-conformance"
    rules = driver["rules"]
    catalog = requirements.catalog()
    assert [r["id"] for r in rules] == sorted({"SMART-DISC-08", "SMART-PKCE-02", "SAFETY-41", "FHIR-HTTP-02",
                                               "SAFETY-38", "SAFETY-39"})
    for rule in rules:
        assert rule["shortDescription"]["text"] == catalog[rule["id"]].text
        assert rule["helpUri"] == catalog[rule["id"]].url
        assert rule["properties"]["level"] == catalog[rule["id"]].level
    results = run["results"]
    # one per violated requirement of each failing check; passed and could-not-check give none
    assert [(r["ruleId"], r["level"]) for r in results] == [("SMART-DISC-08", "error"), ("SAFETY-41", "warning")]
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
    first = results[0]
    assert first["message"]["text"].splitlines()[1:3] == [
        "Expected: 'plain' absent from code_challenge_methods_supported",
        'Actual:   code_challenge_methods_supported = ["S256", "plain"]']
    loc = first["locations"][0]
    assert loc["logicalLocations"][0]["fullyQualifiedName"] == "acme/test_pkce_s256_only"
    assert loc["physicalLocation"]["artifactLocation"]["uri"] == "discovery/test_x.py"
    assert "suppressions" not in first


def test_sarif_marks_baselined_failures_suppressed(tmp_path: Path) -> None:
    base = baseline.load(write(tmp_path, "b.yaml", "- {target: acme, check: test_pkce_s256_only, reason: JIRA-1}\n"))
    marked, _ = baseline.apply(RESULTS, base)
    first = sarif.build(marked)["runs"][0]["results"][0]
    assert first["suppressions"] == [{"kind": "external", "status": "accepted", "justification": "JIRA-1"}]


# ---------------------------------------------------------------------------------------------------------------------
# Baselines

def test_baseline_loads_yaml_and_json(tmp_path: Path) -> None:
    y = baseline.load(write(tmp_path, "b.yaml", "- target: acme\n  check: test_pkce_s256_only\n  reason: JIRA-1\n"))
    j = baseline.load(write(tmp_path, "b.json", json.dumps(
        [{"target": "acme", "check": "discovery/test_x.py::test_pkce_s256_only[acme]", "reason": "JIRA-1"}])))
    assert y.entries == j.entries == (baseline.Entry("acme", "test_pkce_s256_only", "JIRA-1"),)


@pytest.mark.parametrize(("text", "key", "words"), [
    ("target: acme\n", "(top level)", "does not hold a list"),
    ("- {target: acme, check: test_a}\n", "[0].reason", "required text is missing"),
    ("- {target: acme, check: test_a, reason: r, why: x}\n", "[0].why", "unknown key 'why'"),
    ("- {target: acme, check: test_a, reason: r}\n- {target: acme, check: test_a, reason: s}\n", "[1].check",
     "listed twice"),
    ("- [unclosed\n", "(top level)", "not valid YAML/JSON"),
])
def test_baseline_errors_are_one_line(tmp_path: Path, text: str, key: str, words: str) -> None:
    file = write(tmp_path, "b.yaml", text)
    with pytest.raises(baseline.BaselineError) as exc:
        baseline.load(file)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{file}: {key}: ") and words in message and "Fix:" in message


def test_baselined_failure_is_expected_and_does_not_gate(tmp_path: Path) -> None:
    rows = [RESULTS[0], RESULTS[2]]
    assert summary.build(rows, strict=False)["exit_code"] == summary.EXIT_FAILED
    base = baseline.load(write(tmp_path, "b.yaml", "- {target: acme, check: test_pkce_s256_only, reason: JIRA-1}\n"))
    doc = summary.build(rows, strict=False, baseline=base)
    assert doc["exit_code"] == summary.EXIT_OK
    t = doc["targets"]["acme"]
    assert t["totals"]["failed"] == 1 and t["totals"]["expected"] == 1  # still failed, but known
    assert t["findings"][0]["expected"] is True and t["findings"][0]["baseline_reason"] == "JIRA-1"
    assert t["verdict"].startswith("NOT CONFORMANT (known failures only")
    assert doc["baseline"]["unmet"] == [] and doc["baseline"]["expected_failures"] == 1
    md = summary.render_markdown(doc)
    assert "**EXPECTED FAILED (baseline: JIRA-1)** `test_pkce_s256_only`" in md
    assert "EXPECTED FAILED" in summary.render_console(rows, strict=False, baseline=base)


def test_baselined_failure_that_did_not_happen_fails_the_run(tmp_path: Path) -> None:
    base = baseline.load(write(tmp_path, "b.yaml", (
        "- {target: acme, check: test_json_supported, reason: JIRA-2}\n"      # ran and passed: stale
        "- {target: acme, check: test_unreachable_thing, reason: JIRA-3}\n"   # could not check: unknown, not stale
        "- {target: acme, check: test_not_in_this_run, reason: JIRA-4}\n")))  # not run: not stale
    rows = [RESULTS[2], RESULTS[3]]
    doc = summary.build(rows, strict=False, baseline=base)
    assert doc["baseline"]["unmet"] == [{"target": "acme", "check": "test_json_supported", "reason": "JIRA-2",
                                         "outcome": "passed"}]
    assert doc["exit_code"] == summary.EXIT_FAILED
    md = summary.render_markdown(doc)
    assert "### Expected failure did not happen (baseline is stale)" in md and "`test_json_supported` passed" in md
    assert "EXPECTED FAILURE DID NOT HAPPEN test_json_supported" in summary.render_console(
        rows, strict=False, baseline=base)


def test_an_unbaselined_failure_still_gates_next_to_a_baselined_one(tmp_path: Path) -> None:
    base = baseline.load(write(tmp_path, "b.yaml", "- {target: acme, check: test_pkce_s256_only, reason: JIRA-1}\n"))
    other = rec("test_pkce_s256_only", "failed", ["SMART-DISC-08"], target="other")
    assert summary.build([RESULTS[0], other], strict=False, baseline=base)["exit_code"] == summary.EXIT_FAILED


# ---------------------------------------------------------------------------------------------------------------------
# summary.write_all: checklist, SARIF file and "changed since previous run"

def test_write_all_writes_checklist_sarif_and_changes(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    previous_rows = [rec("test_pkce_s256_only", "passed", ["SMART-DISC-08"]),
                     rec("test_json_supported", "failed", ["SAFETY-38"], area="fhir_security")]
    (reports / "previous-summary.json").write_text(json.dumps(summary.build(previous_rows, strict=False)))
    att_file = write(tmp_path, "a.yaml", ATTESTATIONS.replace("2026-05-01", "2026-01-01").replace(
        "2025-10-01", "2026-01-01"))
    doc = summary.write_all(reports, RESULTS, strict=False, attestations={"acme": att_file})
    saved = json.loads((reports / "summary.json").read_text())
    assert saved["targets"]["acme"]["checklist"]["counts"]["attested"] == 2
    changes = saved["targets"]["acme"]["changes"]
    assert sorted(c["check"] for c in changes["new_failures"]) == [
        "test_errors_are_operation_outcome", "test_pkce_s256_only", "test_unreachable_thing"]
    assert [c["check"] for c in changes["fixed"]] == ["test_json_supported"]
    md = (reports / "summary.md").read_text()
    assert "### Changed since previous run" in md and "- **fixed** `test_json_supported` (was failed)" in md
    assert "- **new failed** `test_pkce_s256_only` (was passed)" in md
    assert "### FHIR Implementer's Safety Checklist" in md
    assert json.loads((reports / "results.sarif").read_text())["version"] == "2.1.0"
    assert doc["previous_run"]


def test_write_all_reports_an_unusable_attestation_file_instead_of_crashing(tmp_path: Path) -> None:
    doc = summary.write_all(tmp_path / "r", RESULTS, strict=False, attestations={"acme": tmp_path / "missing.yaml"})
    assert "not found" in doc["targets"]["acme"]["checklist"]["attestations_error"]
    assert "Attestations not used:" in (tmp_path / "r" / "summary.md").read_text()


def test_evidenced_by_must_name_catalog_ids(tmp_path: Path) -> None:
    """A checklist item's evidenced_by naming an unknown id stops the catalog load with the item and the id."""
    for source in (paths.fixtures_dir() / "requirements").glob("*.yaml"):
        text = source.read_text(encoding="utf-8").replace("evidenced_by: [FHIR-NARR-01]", "evidenced_by: [FHIR-NOPE-01]")
        (tmp_path / source.name).write_text(text, encoding="utf-8")
    with pytest.raises(requirements.CatalogError, match="SAFETY-34: evidenced_by .* FHIR-NOPE-01"):
        requirements.catalog(tmp_path)


def test_checklist_writer_is_registered_after_the_run_files(tmp_path: Path) -> None:
    """Through the writers interface: the page lands in the Allure folder and the environment keeps its line."""
    from smart_conformance.report import writers
    from smart_conformance.results import CheckResult, RunResults

    run = RunResults(results=tuple(CheckResult.from_dict(r) for r in RESULTS), targets={"acme": ""})
    writers.write_reports(run, reports=None, allure=tmp_path)
    env = (tmp_path / "environment.properties").read_text()
    assert "harness.version=" in env and "safety.checklist.acme=41 items: 5 automated" in env
    assert len(list(tmp_path.glob("*-result.json"))) == 1
