"""The Allure HTML report, end to end: a small real run with --html, then the report opened in headless Chromium.

Needs an Allure CLI (scripts/bootstrap installs Allure 3 into .tools/ when npm exists). Without one this test fails with
the install instructions: a report nobody can open is a defect, not something to skip quietly.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from smart_conformance.reference.faults import FAULTS
from smart_conformance.report import html
from smart_conformance.testplan import plan


@contextmanager
def serving(folder: Path) -> Iterator[str]:
    """The report folder over http on 127.0.0.1 (Allure's pages fetch their data, which file:// does not allow)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _discovery_fault() -> tuple[str, str]:
    """A reference fault caught by exactly one discovery check, so the run has passes and one known failure."""
    for fault in FAULTS.values():
        caught = sorted(plan().caught_by(fault))
        if fault.area == "discovery" and len(caught) == 1:
            return str(fault), caught[0]
    pytest.fail("no discovery fault with a single catching check in reference/faults.py")


def _titles(results: Path, status: str) -> dict[str, str]:
    """check (the Allure story) -> test title, for the run's results with that status."""
    out = {}
    for file in sorted(results.glob("*-result.json")):
        doc = json.loads(file.read_text(encoding="utf-8"))
        if doc.get("status") == status:
            story = next((lb["value"] for lb in doc.get("labels", []) if lb["name"] == "story"), "")
            out[story] = doc["name"]
    return out


def test_html_report_shows_the_runs_tests_and_outcomes(tmp_path: Path) -> None:
    try:
        allure = html.find_allure()
    except html.AllureUnavailable as exc:
        pytest.fail(f"cannot build the HTML report: {exc}")
    fault, failing_check = _discovery_fault()
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "smart_conformance.cli", "run", "--suite", "discovery",
                           "--reference-fault", fault, "--reports", str(reports), "--html"], check=False,
                          capture_output=True, text=True, timeout=240, env={**os.environ})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output  # the fault's failure, and nothing worse (an HTML problem would be 2 or 3)
    index = reports / "html" / "index.html"
    assert index.is_file(), output
    assert f"HTML report: {index}" in output

    totals = json.loads((reports / "summary.json").read_text())["targets"]["reference"]["totals"]
    assert totals["failed"] == 1 and totals["passed"] > 0, totals
    passed = _titles(reports / "allure-results", "passed")
    failed = _titles(reports / "allure-results", "failed")
    assert list(failed) == [failing_check], failed
    failed_title, passed_title = failed[failing_check], min(passed.values())

    from playwright.sync_api import sync_playwright

    from smart_conformance.browser import find_chromium

    choice = find_chromium()
    with serving(reports / "html") as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=choice.path, args=list(choice.launch_args), headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{base}/index.html")
            page.get_by_test_id("metadata-item-passed").wait_for(timeout=15_000)
            assert page.get_by_test_id("metadata-item-passed").inner_text().split()[-1] == str(totals["passed"])
            assert page.get_by_test_id("metadata-item-failed").inner_text().split()[-1] == str(totals["failed"])
            assert page.get_by_test_id("metadata-item-total").inner_text().split()[-1] == str(  # + the checklist page
                sum(totals[o] for o in ("passed", "failed", "warning", "broken", "skipped")) + 1)
            for title in (passed_title, failed_title):
                page.get_by_test_id("search-input").fill(title)
                page.get_by_text(title, exact=True).first.wait_for(timeout=10_000)
            # the failing test is listed under the failed tab
            page.get_by_test_id("search-input").fill(failed_title)
            page.get_by_test_id("tab-failed").click()
            page.get_by_text(failed_title, exact=True).first.wait_for(timeout=10_000)
        finally:
            browser.close()

    # History survives a rebuild: Allure 3 extends its JSONL file, Allure 2 keeps html/history.
    proc = subprocess.run([sys.executable, "-m", "smart_conformance.cli", "report", "--reports", str(reports)], check=False,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if allure.major == 3:
        assert len((reports / html.HISTORY_JSONL).read_text().splitlines()) == 2
    else:
        assert (reports / "html" / "history").is_dir()


def test_no_allure_cli_is_a_one_line_install_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html, "candidates", lambda cwd=None: [])
    with pytest.raises(html.AllureUnavailable) as exc:
        html.find_allure()
    message = str(exc.value)
    assert "\n" not in message and "npm install --prefix .tools allure@3" in message and "Allure 2" in message
