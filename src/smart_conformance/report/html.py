"""The Allure HTML report (``reports/html/``), built with whichever Allure CLI is installed.

Looked for, in order: ``$SMART_CONFORMANCE_ALLURE`` (path of an ``allure`` executable), ``.tools/node_modules/.bin/
allure`` (Allure 3, installed by ``scripts/bootstrap`` when npm exists) in the project and in the working folder, then
``allure`` on PATH (Allure 3 from npm, or the Allure 2 commandline on Java; told apart by ``allure --version``).

History (trend graphs, per-test history): Allure 3 keeps it in a JSONL file, ``reports/allure-history.jsonl``, that it
reads and extends on every multi-file build (a single file carries none: each point of history would add a copy of
every check's status to the one file, which is meant to stay small enough to mail); for Allure 2 the previous report's ``html/history/`` is copied into the results it
builds from.

The report is built from a copy of ``allure-results`` prepared for a payer's reader (``report/presentation.py``), in a
temporary folder under the reports folder, with Allure 3's categories in a configuration file of its own (so no
``allurerc`` of the working folder applies).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smart_conformance import paths
from smart_conformance.report import presentation
from smart_conformance.report.allure_labels import HTML_CATEGORIES, html_root_cause_categories

ENV = "SMART_CONFORMANCE_ALLURE"
REPORT_NAME = "SMART payer conformance"
HISTORY_JSONL = "allure-history.jsonl"
INSTALL_HINT = ("no Allure CLI found. Fix: install Allure 3 with 'npm install --prefix .tools allure@3' (Node.js 20+; "
                "scripts/bootstrap does this when npm exists), or the Allure 2 commandline (Java 8+, "
                "https://allurereport.org/docs/v2/install/) on PATH, or set SMART_CONFORMANCE_ALLURE=/path/to/allure")


class AllureUnavailable(RuntimeError):
    """No usable Allure CLI: the message says how to install one."""


class ReportError(RuntimeError):
    """The Allure CLI ran and failed, or there were no results to build from."""


@dataclass(frozen=True)
class AllureCli:
    path: str
    major: int  # 2 or 3

    @property
    def label(self) -> str:
        return f"Allure {self.major} ({self.path})"


def _version(exe: str) -> int | None:
    try:
        proc = subprocess.run([exe, "--version"], check=False, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "NO_COLOR": "1"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout + proc.stderr).strip()
    for token in text.split():
        head = token.lstrip("v").split(".", 1)[0]
        if head.isdigit() and "." in token:
            return int(head)
    return None


def candidates(cwd: Path | None = None) -> list[str]:
    found: list[str] = []
    if os.environ.get(ENV):
        found.append(os.environ[ENV])
    for root in (paths.project_root(), (cwd or Path.cwd())):
        exe = root / ".tools" / "node_modules" / ".bin" / "allure"
        if exe.is_file():
            found.append(str(exe))
    on_path = shutil.which("allure")
    if on_path:
        found.append(on_path)
    return list(dict.fromkeys(found))


def find_allure(cwd: Path | None = None) -> AllureCli:
    for exe in candidates(cwd):
        major = _version(exe)
        if major in (2, 3):
            return AllureCli(exe, major)
    raise AllureUnavailable(INSTALL_HINT)


def _root_cause_categories(results: Path) -> list[dict[str, Any]]:
    """The run's root causes as Allure 3 categories, from the categories.json the run wrote (one per root cause)."""
    try:
        written = json.loads((results / "categories.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return html_root_cause_categories(written) if isinstance(written, list) else []


def build(reports: Path, *, single_file: bool = False, cli: AllureCli | None = None) -> Path:
    """Generate ``reports/html/index.html`` from ``reports/allure-results``; returns the index path.

    Built from a copy of the results prepared for reading (``report/presentation.py``: warnings apart from failures,
    report pages as global attachments, titles in words; for ``single_file``, passed checks' evidence in one-line
    form); ``allure-results`` itself is left as recorded."""
    reports = reports.resolve()  # Allure runs in a folder of its own: every path it is given must be absolute
    results = reports / "allure-results"
    if not results.is_dir() or not any(results.glob("*-result.json")):
        raise ReportError(f"{results}: no Allure results. Fix: run 'smart-conformance run --reports {reports}' first")
    cli = cli or find_allure()
    out = reports / "html"
    env = {**os.environ, "NO_COLOR": "1"}
    with tempfile.TemporaryDirectory(prefix=".allure-report-input-", dir=reports) as tmp:
        shown = Path(tmp) / "results"
        presentation.prepare(results, shown, single_file=single_file, allure_major=cli.major)
        if cli.major == 2:
            previous = out / "history"
            if previous.is_dir():
                shutil.copytree(previous, shown / "history")
            cmd = [cli.path, "generate", str(shown), "-o", str(out), "--clean"]
            if single_file:
                cmd.append("--single-file")
        else:
            shutil.rmtree(out, ignore_errors=True)
            config = Path(tmp) / "allurerc.json"  # categories that can match labels (a warning's tag)
            categories = _root_cause_categories(results) + HTML_CATEGORIES
            config.write_text(json.dumps({"categories": categories}, indent=2, ensure_ascii=False), encoding="utf-8")
            cmd = [cli.path, "awesome", str(shown), "--output", str(out), "--report-name", REPORT_NAME,
                   "--config", str(config), "--group-by", presentation.GROUP_BY]
            if single_file:  # bounded: every history point would add a copy of every result's status to the file
                cmd.append("--single-file")
            else:
                cmd += ["--history-path", str(reports / HISTORY_JSONL)]
        try:
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, env=env, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise ReportError(f"{cli.label} did not finish within 10 minutes") from None
    index = out / "index.html"
    if proc.returncode != 0 or not index.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ReportError(f"{cli.label} failed (exit {proc.returncode}): {tail[0]}")
    return index
