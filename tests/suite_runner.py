"""Run the conformance suites in a subprocess and read back the verdicts.

Against the embedded reference server (the default) or against target files (``targets=``). Used by the fault matrix
and the end-to-end tests: a real `pytest` run of `suites/`, exactly as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from smart_conformance import paths
from smart_conformance.testplan import plan


@dataclass(frozen=True)
class SuiteRun:
    returncode: int
    summary: dict
    output: str
    reports: Path

    def checks_with(self, *outcomes: str, target: str | None = None) -> set[str]:
        """Checks with one of ``outcomes``, over all targets or for the one named."""
        found: set[str] = set()
        for name, results in self.summary["targets"].items():
            if target is None or name == target:
                found |= {f["check"] for f in results["findings"] if f["outcome"] in outcomes}
        return found

    def messages(self, target: str, check: str) -> list[str]:
        """The failure/broken messages of one check for one target."""
        results = self.summary["targets"].get(target, {"findings": []})
        return [f["message"] for f in results["findings"] if f["check"] == check]

    def outcomes(self, target: str = "reference") -> dict[str, set[str]]:
        """Check name → the outcomes of its test items (one per parameter) for one target."""
        out: dict[str, set[str]] = {}
        for node, outcome in self.summary["targets"].get(target, {}).get("results", {}).items():
            out.setdefault(node.split("::", 1)[1].split("[", 1)[0], set()).add(outcome)
        return out

    def totals(self, target: str | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, results in self.summary["targets"].items():
            if target is None or name == target:
                for key, value in results["totals"].items():
                    out[key] = out.get(key, 0) + value
        return out


def reference_target_file(folder: Path, **changes: Any) -> Path:
    """fixtures/targets/reference.yaml as a payer's own file, with ``changes`` replacing top-level keys."""
    doc = yaml.safe_load(paths.reference_target().read_text(encoding="utf-8"))
    doc.pop("attestations", None)
    doc.update(changes)
    out = folder / "reference.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return out


def suite_checks() -> dict[str, str]:
    """Every check (test function) in suites/, mapped to its module path relative to suites/ (``tokens/test_x.py``)."""
    return {name: check.module for name, check in plan().checks.items()}


def run_suites(suites: list[str], reports: Path, *, faults: tuple[str, ...] = (), variants: tuple[str, ...] = (),
               extra: tuple[str, ...] = (), order_seed: int | None = None,
               targets: tuple[Path, ...] = (), env: dict[str, str] | None = None, timeout: float = 600) -> SuiteRun:
    """One pytest run of ``suites``: against ``targets`` (target YAML files) if given, else the embedded reference
    server with ``faults`` (and legitimate ``variants``) on. ``env`` adds variables (secrets the target files
    reference). ``order_seed``: run the checks in pytest-randomly's order for that seed instead of file order."""
    args = [sys.executable, "-m", "pytest", *[str(paths.suites_dir() / s) for s in suites],
            f"--rootdir={paths.suites_dir()}", f"--smart-reports={reports}", f"--alluredir={reports / 'allure-results'}",
            "-p", "no:cacheprovider", "-q",
            *(("-p", "randomly", f"--randomly-seed={order_seed}") if order_seed is not None else ("-p", "no:randomly")),
            *extra]
    args += [f"--reference-fault={f}" for f in faults]
    args += [f"--reference-variant={v}" for v in variants]
    args += [f"--target={t}" for t in targets]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    run_env.update(env or {})
    proc = subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout, env=run_env,
                          cwd=str(paths.project_root()))
    summary_file = reports / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {"targets": {}}
    return SuiteRun(proc.returncode, summary, proc.stdout[-8000:] + proc.stderr[-4000:], reports)
