"""Baselines and run-to-run changes through the real command line (small discovery runs against the reference)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from smart_conformance.reference.faults import FAULTS
from smart_conformance.testplan import plan


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smart_conformance.cli", *args], check=False, capture_output=True, text=True,
                          timeout=240)


def _discovery_fault() -> tuple[str, str]:
    for fault in FAULTS.values():
        caught = sorted(plan().caught_by(fault))
        if fault.area == "discovery" and len(caught) == 1:
            return str(fault), caught[0]
    pytest.fail("no discovery fault with a single catching check in reference/faults.py")


def test_baseline_gates_on_new_failures_only_and_goes_stale_when_fixed(tmp_path: Path) -> None:
    fault, check = _discovery_fault()
    reports = tmp_path / "reports"
    base = tmp_path / "baseline.yaml"
    base.write_text(f"- target: reference\n  check: {check}\n  reason: known defect, ticket PAY-1\n")

    first = cli("run", "--suite", "discovery", "--reference-fault", fault, "--baseline", str(base),
                "--reports", str(reports))
    assert first.returncode == 0, first.stdout + first.stderr  # the only failure is a known one
    doc = json.loads((reports / "summary.json").read_text())
    target = doc["targets"]["reference"]
    assert target["totals"]["failed"] == 1 and target["totals"]["expected"] == 1
    assert [f["check"] for f in target["findings"] if f.get("expected")] == [check]
    sarif = json.loads((reports / "results.sarif").read_text())
    assert all(r.get("suppressions") for r in sarif["runs"][0]["results"]) and sarif["runs"][0]["results"]
    assert "changes" not in target  # no previous run

    second = cli("run", "--suite", "discovery", "--baseline", str(base), "--reports", str(reports))
    assert second.returncode == 1, second.stdout + second.stderr  # the baseline is stale now
    assert (reports / "previous-summary.json").is_file()
    doc = json.loads((reports / "summary.json").read_text())
    target = doc["targets"]["reference"]
    assert target["totals"]["failed"] == 0
    assert [u["check"] for u in target["baseline_unmet"]] == [check]
    assert [c["check"] for c in target["changes"]["fixed"]] == [check] and target["changes"]["new_failures"] == []
    md = (reports / "summary.md").read_text()
    assert "Expected failure did not happen" in md and f"- **fixed** `{check}` (was failed)" in md
    assert f"EXPECTED FAILURE DID NOT HAPPEN {check}" in second.stdout


def test_bad_baseline_is_one_line_and_exit_2(tmp_path: Path) -> None:
    base = tmp_path / "baseline.yaml"
    base.write_text("- {target: reference, check: test_x}\n")
    proc = cli("run", "--suite", "discovery", "--baseline", str(base), "--reports", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "baseline.yaml: [0].reason: required text is missing" in proc.stderr


def test_bad_attestation_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "att.yaml").write_text("version: 1\ntarget: t\nattestations:\n  - requirement: SAFETY-23\n"
                                       "    answer: no\n    by: me\n    date: 2026-01-01\n    evidence: x\n")
    (tmp_path / "t.yaml").write_text(
        "name: t\nfhir_base_url: https://127.0.0.1:1/fhir\nattestations: att.yaml\nclient:\n  client_id: a\n"
        "  redirect_uri: http://127.0.0.1:8765/callback\nmembers:\n  primary:\n    username: u\n"
        "    password: ${NOPE_PW:-x}\n    patient_id: '1'\n")
    proc = cli("run", "--target", str(tmp_path / "t.yaml"), "--reports", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "att.yaml: attestations[0].answer: YAML read the bare word" in proc.stderr
