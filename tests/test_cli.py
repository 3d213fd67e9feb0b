"""The command line as a payer's QA engineer meets it: clear one-line errors, honest exit codes, a summary."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from smart_conformance import paths

GOOD = """
name: {name}
fhir_base_url: https://127.0.0.1:{port}/fhir
client:
  client_id: app
  client_secret: ${{CLI_TEST_SECRET}}
  redirect_uri: http://127.0.0.1:8765/callback
members:
  primary:
    username: member
    password: ${{CLI_TEST_PASSWORD}}
    patient_id: "1"
"""


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "CLI_TEST_SECRET": "secret-value-9", "CLI_TEST_PASSWORD": "password-value-9",
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "smart_conformance.cli", *args], check=False, capture_output=True, text=True,
                          env=full_env, cwd=str(cwd) if cwd else None, timeout=300)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bad_yaml_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n  fhir_base_url: [\n")
    proc = cli("run", "--target", str(bad), "--reports", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "bad.yaml" in proc.stderr and "not valid YAML" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_missing_env_var_is_one_line_and_exit_2(tmp_path: Path) -> None:
    target = tmp_path / "t.yaml"
    target.write_text(GOOD.format(name="t", port=1))
    env_less = {k: v for k, v in os.environ.items() if k != "CLI_TEST_PASSWORD"}
    proc = subprocess.run([sys.executable, "-m", "smart_conformance.cli", "run", "--target", str(target),
                           "--reports", str(tmp_path / "r")], check=False, capture_output=True, text=True,
                          env={**env_less, "CLI_TEST_SECRET": "x" * 8}, timeout=60)
    assert proc.returncode == 2
    assert "members.primary.password" in proc.stderr and "CLI_TEST_PASSWORD is not set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_target_is_broken_fast_with_one_clear_line(tmp_path: Path) -> None:
    target = tmp_path / "down.yaml"
    target.write_text(GOOD.format(name="down", port=closed_port()))
    started = time.perf_counter()
    proc = cli("run", "--target", str(target), "--suite", "discovery", "--reports", str(tmp_path / "r"))
    elapsed = time.perf_counter() - started
    assert proc.returncode == 3, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    totals = summary["targets"]["down"]["totals"]
    assert totals["broken"] > 0 and totals["failed"] == 0 and totals["passed"] == 0
    messages = {f["message"] for f in summary["targets"]["down"]["findings"]}
    assert len(messages) == 1 and "target 'down' is unreachable" in messages.pop()
    assert "Traceback" not in proc.stdout + proc.stderr
    # One connection attempt in all: the run does not pay a timeout per test.
    assert elapsed < 60, f"took {elapsed:.1f}s"


def test_unknown_fault_is_a_usage_error(tmp_path: Path) -> None:
    proc = cli("run", "--suite", "discovery", "--reference-fault", "no-such-fault", "--reports", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "no-such-fault" in proc.stdout + proc.stderr


def test_demo_run_against_reference_writes_summary(tmp_path: Path) -> None:
    proc = cli("run", "--suite", "discovery", "--reports", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "## Target `reference`: CONFORMANT" in summary
    assert (tmp_path / "r" / "junit.xml").is_file()
    results = [json.loads(f.read_text()) for f in (tmp_path / "r" / "allure-results").glob("*-result.json")]
    # every check cites its requirements and names its target (the Safety Checklist page is a report page, no check)
    checks = [r for r in results if r["fullName"].startswith("discovery.")]
    assert checks, "no Allure results written"
    for one in checks:
        assert any(link.get("type") == "req" for link in one.get("links", [])), one["fullName"]
        assert any(p["name"] == "target" and "reference" in p["value"] for p in one.get("parameters", [])), one
    for extra in ("environment.properties", "categories.json", "executor.json"):
        assert (tmp_path / "r" / "allure-results" / extra).is_file()


def test_wrong_selector_in_recipe_is_one_clear_broken_result(tmp_path: Path) -> None:
    """A recipe that no longer matches the payer's page: broken (not failed), naming the step, page and screenshot."""
    from smart_conformance.reference.server import ReferenceServer

    recipe = paths.reference_target().read_text().replace('"#username"', '"#user-name"')
    target = tmp_path / "changed-page.yaml"
    target.write_text(recipe)
    with ReferenceServer() as server:
        proc = cli("run", "--target", str(target), "--suite", "launch", "--reports", str(tmp_path / "r"),
                   "--", "-k", "test_standalone_launch_succeeds", env=server.target_env())
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    (finding,) = summary["targets"]["reference"]["findings"]
    assert finding["outcome"] == "broken"
    message = finding["message"]
    assert "login step 1" in message and "#user-name" in message and "screenshot" in message, message
    assert "Sign in" in message or "/auth/login" in message, message
    attachments = list((tmp_path / "r" / "allure-results").glob("*-attachment.png"))
    assert attachments, "the failing page's screenshot should be attached to the Allure result"
