"""The Allure HTML report as a payer reads it: real runs, the report opened in headless Chromium, and what a reader sees
asserted (titles in words, counts, warnings apart from failures, no "Unknown", the findings page); then the parts that
make it so (titles, the presentation copy, the findings page, screenshots attached once) without a browser.

Needs an Allure CLI (scripts/bootstrap installs Allure 3 into .tools/ when npm exists). Without one the end-to-end
tests fail with the install instructions: a report nobody can open is a defect, not something to skip quietly. The
browser reaches nothing but files and 127.0.0.1 (Allure's page would fetch an analytics script from the internet).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from smart_conformance import paths
from smart_conformance.http import Evidence
from smart_conformance.reference.faults import FAULTS
from smart_conformance.report import allure_labels, findings_page, html, presentation, titles
from smart_conformance.results import CheckResult, Outcome, RunResults
from smart_conformance.testplan import plan

SHOULD_FAULT, LAUNCH_FAULT = "hsts-missing", "state-altered"  # a SHOULD finding (TLS-06); a SHALL one seen in a launch
MAX_SINGLE_FILE = 6_000_000  # bytes: the default run's one-file report stays small enough to mail
UNKNOWN = re.compile(r"\b\d+ unknown\b", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------------------
# Helpers: a loopback web server, Chromium, the report's tree as a reader sees it


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


def _local_only(route: Any) -> None:
    url = route.request.url
    if url.startswith(("file:", "data:", "blob:", "about:", "http://127.0.0.1:")):
        route.continue_()
    else:
        route.abort()


@contextmanager
def report_page(url: str) -> Iterator[Any]:
    """The report's overview in headless Chromium (the distribution's where Playwright's own is not installed)."""
    from playwright.sync_api import sync_playwright

    from smart_conformance.browser import find_chromium

    choice = find_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=choice.path, args=list(choice.launch_args), headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 12000})
            context.route("**/*", _local_only)
            page = context.new_page()
            page.goto(url)
            page.get_by_test_id("metadata-item-total").wait_for(timeout=30_000)
            yield page
        finally:
            browser.close()


def count(page: Any, status: str) -> int:
    item = page.get_by_test_id(f"metadata-item-{status}")
    return int(item.inner_text().split()[-1]) if item.count() else 0


def expand(page: Any) -> None:
    """Open every closed section of the tree (Allure opens only those holding a failure)."""
    closed = "[data-testid=tree-arrow]:not(:has(svg[class*='opened']))"
    for _ in range(50):
        arrow = page.locator(closed).first
        if not arrow.count():
            return
        arrow.click()


def tree(page: Any) -> list[tuple[str, str, str]]:
    """The tree in document order, every section opened: (section title, leaf status, leaf title) per leaf."""
    expand(page)
    nodes = page.locator("[data-testid=tree-section-title], [data-testid^=tree-leaf-status-], "
                         "[data-testid=tree-leaf-title]").evaluate_all(
        "els => els.map(e => [e.getAttribute('data-testid'), e.innerText.trim()])")
    section, status, leaves = "", "", []
    for testid, text in nodes:
        if testid == "tree-section-title":
            section = text
        elif testid.startswith("tree-leaf-status-"):
            status = testid.removeprefix("tree-leaf-status-")
        else:
            leaves.append((section, status, text))
    return leaves


def open_tab(page: Any, tab: str) -> None:
    """A tab of the overview (back to the overview first when a check's page is open)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(2):
        if page.get_by_test_id(f"nav-tab-{tab}").count():
            break
        # The report loaded again: the single file (6 MB) can take long on a loaded CI machine; one more try.
        page.goto(page.url.split("#", 1)[0])
        try:
            page.get_by_test_id("metadata-item-total").wait_for(timeout=60_000)
        except PlaywrightTimeout:
            if attempt:
                raise
    page.get_by_test_id(f"nav-tab-{tab}").click()


def global_page(page: Any, starts_with: str) -> str:
    """Open the global attachment whose name starts so (the findings page, the checklist) and return its text."""
    open_tab(page, "globalAttachments")
    header = page.get_by_test_id("test-result-attachment-header").filter(has_text=starts_with).first
    header.wait_for(timeout=10_000)
    header.click()
    frame = page.frame_locator("iframe").first
    frame.locator("body").wait_for(timeout=10_000)
    return str(frame.locator("body").inner_text())


def open_check(page: Any, title: str) -> str:
    """Search the tree for a check by its title, open it, and return the page's text."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    open_tab(page, "results")
    leaf = page.get_by_test_id("tree-leaf-title").filter(has_text=title).first
    for attempt in range(3):
        # A search opens the sections it matches; typed while the page still renders (a loaded CI machine), it can
        # be lost, and the leaf stays in a closed section. Type it again and open every section.
        page.get_by_test_id("search-input").fill(title)
        if attempt:
            expand(page)
        try:
            leaf.click(timeout=10_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    page.get_by_test_id("test-result-fullname").wait_for(timeout=10_000)
    return str(page.locator("body").inner_text())


def expected_sections(areas: list[str]) -> set[str]:
    """The tree's sections in words: each area's README heading and each of its modules' docstring first line."""
    found = {paths.suite_areas()[a] for a in areas}
    for area in areas:
        for module in sorted((paths.suites_dir() / area).glob("test_*.py")):
            found.add(titles.group_title(ast.get_docstring(ast.parse(module.read_text())), module.stem))
    return found


def raw_results(reports: Path) -> list[dict[str, Any]]:
    return [json.loads(f.read_text(encoding="utf-8")) for f in (reports / "allure-results").glob("*-result.json")]


def cli(*args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    return subprocess.run([sys.executable, "-m", "smart_conformance.cli", *args], check=False, capture_output=True,
                          text=True, timeout=timeout, env=clean)


def _discovery_fault() -> tuple[str, str]:
    """A reference fault caught by exactly one discovery check, so the run has passes and one known failure."""
    for fault in FAULTS.values():
        caught = sorted(plan().caught_by(fault))
        if fault.area == "discovery" and len(caught) == 1:
            return str(fault), caught[0]
    pytest.fail("no discovery fault with a single catching check in reference/faults.py")


def _allure() -> html.AllureCli:
    try:
        return html.find_allure()
    except html.AllureUnavailable as exc:
        pytest.fail(f"cannot build the HTML report: {exc}")


# ---------------------------------------------------------------------------------------------------------------------
# End to end: a run with a SHALL failure in discovery, one in a launch, and a SHOULD warning


def test_html_report_as_a_payer_reads_it(tmp_path: Path) -> None:
    allure = _allure()
    assert SHOULD_FAULT in FAULTS and LAUNCH_FAULT in FAULTS
    fault, failing_check = _discovery_fault()
    areas = ["discovery", "launch", "tls"]
    reports = tmp_path / "reports"
    proc = cli("run", *[a for area in areas for a in ("--suite", area)], "--reference-fault", fault,
               "--reference-fault", LAUNCH_FAULT, "--reference-fault", SHOULD_FAULT, "--reports", str(reports),
               "--html", timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-4000:]  # the faults' failures, and nothing worse
    index = reports / "html" / "index.html"
    assert f"HTML report: {index}" in output and index.is_file()

    summary = json.loads((reports / "summary.json").read_text())["targets"]["reference"]
    totals = summary["totals"]
    failed = {f["check"] for f in summary["findings"] if f["outcome"] == "failed"}
    warned = {f["check"] for f in summary["findings"] if f["outcome"] == "warning"}
    assert failing_check in failed and "test_state_returned_unchanged" in failed and len(warned) == 1, summary
    by_check: dict[str, list[str]] = {}
    for result in raw_results(reports):
        by_check.setdefault(result["fullName"].rsplit("#", 1)[-1], []).append(result["name"])
    failed_titles = sorted(t for c in failed for t in by_check[c])
    warning_title = allure_labels.WARNING_TITLE + by_check[warned.pop()][0]
    launch_title = by_check["test_state_returned_unchanged"][0]
    cases = by_check["test_smart_configuration_json_whatever_accept"]  # a parametrized check: its case in the title
    assert len(set(cases)) == len(cases) == 4 and all(re.search(r"\([a-z-]+\) \[reference\]$", t) for t in cases)

    with serving(reports / "html") as base, report_page(f"{base}/index.html") as page:
        # counts: checks only (the pages are no results), a warning counted with the passes, nothing "Unknown"
        assert count(page, "total") == sum(totals[o] for o in ("passed", "failed", "warning", "broken", "skipped"))
        assert count(page, "failed") == totals["failed"] == len(failed_titles)
        assert count(page, "passed") == totals["passed"] + totals["warning"]
        assert count(page, "unknown") == 0 and not UNKNOWN.search(page.locator("body").inner_text())
        # the tree in words: areas and groups of checks, never folder or module names
        leaves = tree(page)
        sections = {section for section, _, _ in leaves} | set(page.get_by_test_id("tree-section-title")
                                                               .all_inner_texts())
        assert sections == expected_sections(areas), sections
        assert not any(re.search(r"\btest_|_", s) and s.islower() for s in sections), sections
        shown = {title for _, _, title in leaves}
        assert set(cases) <= shown and set(failed_titles) <= shown and warning_title in shown
        assert ("Transport security (TLS) of every payer endpoint", "passed", warning_title) in leaves
        # warnings apart from failures, each in its category
        open_tab(page, "categories")
        page.get_by_test_id("tree-section-title").first.wait_for(timeout=10_000)
        categorized = tree(page)
        # (one category per root cause, named by its level, requirement and cause: "SHOULD · ID (SHOULD): ...")
        assert [(st, t) for s, st, t in categorized if s.startswith("SHOULD")] == [
            ("passed", warning_title)], categorized
        assert sorted(t for s, st, t in categorized if s.startswith("SHALL")) == failed_titles, categorized
        # the findings page and the checklist, from the overview
        findings = global_page(page, "Findings: reference")
        assert "3 findings (2 SHALL, 1 SHOULD)" in findings, findings
        assert all(t in findings for t in failed_titles), findings
        open_tab(page, "globalAttachments")
        assert page.get_by_test_id("test-result-attachment-header").filter(
            has_text="FHIR Implementer's Safety Checklist [reference]").count() == 1
        # the failing launch check shows the evidence its finding needs: its launch reused the member's sign-in
        # session and went straight back to the app, so no page was shown; the finding names the request and redirect
        launch_page = open_check(page, launch_title)
        assert re.search(r"Evidence: browser GET \S+ → redirected to ", launch_page), launch_page[:3000]

    # the launch's screenshots went into allure-results once each: passed checks that used them reference them
    carriers: dict[str, set[str]] = {}  # screenshot (name and content) -> the passed checks that carry it in full
    referenced: set[str] = set()
    for result in raw_results(reports):
        for attachment in result.get("attachments", []):
            if result["status"] == "passed" and attachment.get("type") == "image/png":
                digest = hashlib.sha256((reports / "allure-results" / attachment["source"]).read_bytes()).hexdigest()
                carriers.setdefault(f"{attachment['name']}/{digest}", set()).add(result["name"])
            if attachment["name"].endswith(allure_labels.SHARED_SUFFIX):
                referenced.add(attachment["name"].split(":", 1)[0])
    assert carriers and all(len(c) == 1 for c in carriers.values()), carriers
    assert referenced, "checks that used a shared launch should reference its screenshots"

    # the one-file report: the same reader's view, opened from disk; a passed check's evidence in brief
    proc = cli("report", "--reports", str(reports), "--single-file", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with report_page(index.resolve().as_uri()) as page:
        assert count(page, "failed") == totals["failed"] and count(page, "unknown") == 0
        assert "3 findings (2 SHALL, 1 SHOULD)" in global_page(page, "Findings: reference")
        launch_page = open_check(page, launch_title)
        assert "Evidence: browser GET " in launch_page, launch_page[:3000]
        passed_title = next(t for _, st, t in leaves if st == "passed" and "(no-accept)" in t)
        open_check(page, passed_title)
        description = page.frame_locator("[data-testid=test-result-description-frame]").locator("body")
        assert "In brief:" in description.inner_text(timeout=10_000)

    # History survives a rebuild: Allure 3 extends its JSONL file on multi-file builds, Allure 2 keeps html/history.
    proc = cli("report", "--reports", str(reports), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if allure.major == 3:
        assert len((reports / html.HISTORY_JSONL).read_text().splitlines()) == 2
    else:
        assert (reports / "html" / "history").is_dir()


def test_default_run_single_file_report_is_small_and_complete(tmp_path: Path) -> None:
    """`smart-conformance run` then `report --single-file`, as the README says: at most 6 MB, every check counted,
    nothing "Unknown", and the findings page says there is nothing to fix."""
    _allure()
    reports = tmp_path / "reports"
    proc = cli("run", "--reports", str(reports), timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    proc = cli("report", "--reports", str(reports), "--single-file", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    index = reports / "html" / "index.html"
    assert index.stat().st_size <= MAX_SINGLE_FILE, f"{index.stat().st_size} bytes"
    totals = json.loads((reports / "summary.json").read_text())["targets"]["reference"]["totals"]
    with report_page(index.resolve().as_uri()) as page:
        assert count(page, "total") == sum(totals[o] for o in ("passed", "failed", "warning", "broken", "skipped"))
        assert count(page, "passed") == totals["passed"] and count(page, "unknown") == 0
        assert not UNKNOWN.search(page.locator("body").inner_text())
        assert set(page.get_by_test_id("tree-section-title").all_inner_texts()) >= set(paths.suite_areas().values())
        assert "0 findings (0 SHALL, 0 SHOULD)" in global_page(page, "Findings: reference")


def test_no_allure_cli_is_a_one_line_install_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html, "candidates", lambda cwd=None: [])
    with pytest.raises(html.AllureUnavailable) as exc:
        html.find_allure()
    message = str(exc.value)
    assert "\n" not in message and "npm install --prefix .tools allure@3" in message and "Allure 2" in message


# ---------------------------------------------------------------------------------------------------------------------
# The parts, without a browser


def test_titles_are_words_with_the_case_and_target() -> None:
    assert titles.in_words("test_token_response") == "Token response"
    assert titles.case_of("reference-no-accept", "reference") == "no-accept"
    assert titles.case_of("reference", "reference") == ""
    assert titles.check_title("The code is refused.", "test_x", "missing", "reference") == \
        "The code is refused (missing) [reference]"
    long = ("An empty value and a malformed value never give a 5xx; a 4xx carries an OperationOutcome that says which "
            "parameter was wrong.\n\nMore detail.")
    assert titles.headline(long) == "An empty value and a malformed value never give a 5xx"
    assert titles.headline("Short.\n    Second line of the same sentence.") == "Short. Second line of the same sentence."
    named = titles.from_nodeid("discovery/test_smart_configuration.py::"
                               "test_smart_configuration_json_whatever_accept[reference-text-html]", "reference")
    assert named is not None and named.area == paths.suite_areas()["discovery"]
    assert named.group.startswith("SMART configuration") and named.title.endswith("(text-html) [reference]")
    assert named.check == "Smart configuration json whatever accept"


def _result(tmp: Path, name: str, status: str, *, message: str = "", attachments: list[dict[str, Any]] = (),
            labels: list[dict[str, str]] | None = None, start: int = 1, check: str = "") -> dict[str, Any]:
    doc = {"uuid": name, "name": f"{check}[reference]" if check else name,
           "fullName": f"discovery.test_smart_configuration#{check or name}", "status": status,
           "start": start, "stop": start + 1,
           "labels": labels if labels is not None else [{"name": "epic", "value": "Discovery"},
                                                        {"name": "host", "value": "vm"},
                                                        {"name": "tag", "value": "SMART-01"}],
           "parameters": [{"name": "target", "value": "'reference'"}], "attachments": list(attachments)}
    if message:
        doc["statusDetails"] = {"message": message}
    (tmp / f"{name}-result.json").write_text(json.dumps(doc), encoding="utf-8")
    return doc


def _exchanges(tmp: Path, source: str, urls: list[str]) -> dict[str, Any]:
    rows = [{"started_at": f"t{i}", "request": {"method": "GET", "url": u, "headers": [], "body": ""},
             "response": {"status": 200, "reason": "OK", "headers": [], "body": "{}"}} for i, u in enumerate(urls)]
    (tmp / source).write_text(json.dumps(rows), encoding="utf-8")
    return {"name": f"HTTP exchanges ({len(rows)})", "source": source, "type": "application/json"}


def test_presentation_sets_warnings_apart_and_pages_aside(tmp_path: Path) -> None:
    results, out = tmp_path / "allure-results", tmp_path / "shown"
    results.mkdir()
    (results / "environment.properties").write_text(f"{allure_labels.STRICT_KEY}=false\n")
    (results / "shot-attachment.png").write_bytes(b"\x89PNG")
    (results / "page-attachment.html").write_text("<p>matrix</p>")
    shared = _exchanges(results, "a-attachment.json", ["https://payer.example/fhir/metadata",
                                                       "https://payer.example/fhir/Patient/1"])
    _result(results, "test_passed_first", "passed", start=1, attachments=[
        shared, {"name": "launch-01: Sign in", "source": "shot-attachment.png", "type": "image/png"}])
    _result(results, "test_passed_second", "passed", start=2, attachments=[
        _exchanges(results, "b-attachment.json", ["https://payer.example/fhir/metadata"])])
    _result(results, "test_failed", "failed", message="ConformanceFailure: SMART-01 (SHALL)", start=3,
            attachments=[{"name": "launch-01: Sign in", "source": "shot-attachment.png", "type": "image/png"}])
    _result(results, "test_warned", "failed", message="smart_conformance.checks.ConformanceFailure: [SHOULD] TLS-06",
            start=4)
    _result(results, "test_never_started", "broken", message="could not check", start=5, labels=[],
            check="test_smart_configuration_served")
    (results / "page-result.json").write_text(json.dumps({
        "uuid": "page", "name": "FHIR Implementer's Safety Checklist [reference]", "status": "unknown",
        "statusDetails": {"message": "41 items"}, "labels": [{"name": "report_page", "value": "checklist"}],
        "attachments": [{"name": "matrix", "source": "page-attachment.html", "type": "text/html"}]}))
    (results / "c-container.json").write_text(json.dumps({"uuid": "c", "children": ["test_passed_first"],
                                                          "befores": [{"name": "http", "status": "passed"}]}))

    prepared = presentation.prepare(results, out, single_file=True, allure_major=3)
    shown = {d["uuid"]: d for d in (json.loads(f.read_text()) for f in out.glob("*-result.json"))}
    assert set(shown) == {"test_passed_first", "test_passed_second", "test_failed", "test_warned",
                          "test_never_started"}, "the page is no result"
    warned = shown["test_warned"]
    assert warned["status"] == "passed" and warned["name"].startswith(allure_labels.WARNING_TITLE)
    assert {"name": "tag", "value": allure_labels.WARNING_TAG} in warned["labels"] and prepared.warnings == 1
    assert shown["test_failed"]["status"] == "failed" and shown["test_failed"]["attachments"][0]["type"] == "image/png"
    first, second = shown["test_passed_first"], shown["test_passed_second"]
    assert first["attachments"] == [] and "GET /fhir/Patient/1 → 200 OK" in first["description"]
    assert "file: launch-01: Sign in" in first["description"]
    assert "+ 1 exchange shown under an earlier check" in second["description"]
    assert all(lb["name"] not in ("host", "tag") for lb in first["labels"]), "noise and (single file) tags dropped"
    never = shown["test_never_started"]  # a fixture failed before it ran: titled from the suite's source
    assert never["name"].endswith(" [reference]") and not never["name"].startswith("test_")
    assert {"name": "epic", "value": paths.suite_areas()["discovery"]} in never["labels"]
    assert not list(out.glob("*-container.json")), "a fixture entry that carries nothing is left out"
    assert (out / "shot-attachment.png").is_file() and not (out / "a-attachment.json").exists()
    (globals_file,) = out.glob("*-globals.json")
    pages = json.loads(globals_file.read_text())["attachments"]
    assert [p["name"] for p in pages] == ["FHIR Implementer's Safety Checklist [reference] — 41 items"]

    strict, legacy = tmp_path / "strict", tmp_path / "legacy"
    (results / "environment.properties").write_text(f"{allure_labels.STRICT_KEY}=true\n")
    presentation.prepare(results, strict, single_file=False)
    assert json.loads((strict / "test_warned-result.json").read_text())["status"] == "failed"
    presentation.prepare(results, legacy, single_file=False, allure_major=2)  # Allure 2 reads no global attachments
    pages2 = [d for d in (json.loads(f.read_text()) for f in legacy.glob("*-result.json"))
              if d.get("fullName", "").startswith("report_pages.")]
    assert len(pages2) == 1 and pages2[0]["status"] == "skipped"


def _check(check: str, outcome: Outcome, findings: list[dict[str, Any]] = (), nodeid: str = "") -> CheckResult:
    return CheckResult.from_dict({
        "target": "acme", "area": "tokens", "check": check, "outcome": str(outcome), "doc": f"{check} doc.",
        "nodeid": nodeid or f"tokens/test_token_request.py::{check}[acme]", "message": "could not check: x: why",
        "findings": list(findings), "level": findings[0]["level"] if findings else ""})


def test_findings_page_groups_checks_by_cause() -> None:
    cause = {"requirements": ["RFC6749-05"], "level": "SHALL", "expected": "400 invalid_grant",
             "actual": "403 invalid_code", "evidence": "POST https://as.example/token -> 403"}
    warn = {"requirements": ["TLS-06"], "level": "SHOULD", "expected": "HSTS", "actual": "none"}
    run = RunResults(results=(
        _check("test_a", Outcome.FAILED, [cause]), _check("test_b", Outcome.FAILED, [cause]),
        _check("test_c", Outcome.WARNING, [warn]), _check("test_d", Outcome.BROKEN),
        _check("test_e", Outcome.PASSED)), targets={"acme": ""})
    (page,) = findings_page.collect(run)
    assert page.headline() == "2 findings (1 SHALL, 1 SHOULD); 1 check(s) could not check."
    assert [f.level for f in page.findings] == ["SHALL", "SHOULD"]
    assert page.findings[0].check_names == ["test_a", "test_b"]
    text = findings_page.render_html(page)
    assert "Seen by 2 checks" in text and "403 invalid_code" in text and "test_d doc [acme]" in text


def test_screenshots_attached_once_and_in_full_for_a_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attached: list[tuple[str, str]] = []
    monkeypatch.setattr(allure_labels.allure, "attach", type("A", (), {
        "__call__": staticmethod(lambda body, name=None, **kw: attached.append(("text", str(name)))),
        "file": staticmethod(lambda source, name=None, **kw: attached.append(("file", str(name))))})())
    monkeypatch.setattr(allure_labels, "_ATTACHED", {})
    shot = tmp_path / "launch-01-01.png"
    shot.write_bytes(b"\x89PNG")
    evidence = Evidence(files=[("launch-01: Sign in", shot)])

    def check(title: str, failure: BaseException | None = None) -> list[tuple[str, str]]:
        attached.clear()
        monkeypatch.setitem(allure_labels._current, "title", title)
        allure_labels.attach_evidence(evidence, failure)
        return list(attached)

    assert check("first [acme]") == [("file", "launch-01: Sign in")]
    assert check("second [acme]") == [("text", f"launch-01: 1{allure_labels.SHARED_SUFFIX}")]
    reference = [("text", f"launch-01: 1{allure_labels.SHARED_SUFFIX}")]
    assert check("skipped [acme]", pytest.skip.Exception("n/a")) == reference
    assert check("failed [acme]", AssertionError("finding")) == [("file", "launch-01: Sign in")]
