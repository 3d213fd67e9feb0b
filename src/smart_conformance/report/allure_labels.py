"""Allure metadata derived from what the suites already declare: area, module, check, cited requirements.

Only called on the process that runs the test (never the xdist controller, where allure calls break).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import allure
import pytest

from smart_conformance import __version__, paths, redact, requirements
from smart_conformance.checks import Finding
from smart_conformance.http import Evidence
from smart_conformance.results import RunResults

SEVERITY = {
    "SHALL": allure.severity_level.CRITICAL,
    "SHALL NOT": allure.severity_level.CRITICAL,
    "SHOULD": allure.severity_level.NORMAL,
    "SHOULD NOT": allure.severity_level.NORMAL,
    "MAY": allure.severity_level.MINOR,
}

# Titles of the areas that are not suite folders (suite areas take theirs from suites/<area>/README.md).
OTHER_AREA_TITLES = {"safety_checklist": "FHIR Implementer's Safety Checklist"}


def label_test(item: pytest.Item, target: str, area: str, check: str, ids: tuple[str, ...]) -> None:
    module_doc = (getattr(item.module, "__doc__", None) or "").strip().splitlines() if hasattr(item, "module") else []
    reqs = requirements.lookup(ids)
    top = requirements.strongest(reqs)
    allure.dynamic.epic(paths.suite_areas().get(area) or OTHER_AREA_TITLES.get(area, area))
    allure.dynamic.feature(module_doc[0] if module_doc else item.path.stem if hasattr(item, "path") else area)
    doc = (getattr(item, "obj", None).__doc__ or "").strip() if getattr(item, "obj", None) else ""
    allure.dynamic.story(check)
    if doc:
        allure.dynamic.title(f"{doc.splitlines()[0]} [{target}]")
        allure.dynamic.description(doc)
    allure.dynamic.parameter("target", target)
    if top:
        allure.dynamic.severity(SEVERITY.get(top.level, allure.severity_level.NORMAL))
    for req in reqs:
        allure.dynamic.link(req.url, link_type="req", name=f"{req.id} ({req.level})")
        allure.dynamic.tag(req.id)


def attach_evidence(evidence: Evidence) -> None:
    if evidence.exchanges:
        allure.attach(json.dumps([e.as_dict() for e in evidence.exchanges], indent=2, ensure_ascii=False),
                      name=f"HTTP exchanges ({len(evidence.exchanges)})", attachment_type=allure.attachment_type.JSON)
    for name, path in evidence.files:
        if path.is_file():
            kind = allure.attachment_type.PNG if path.suffix == ".png" else None
            allure.attach.file(str(path), name=redact.text(name), attachment_type=kind, extension=path.suffix[1:])
    if evidence.notes:
        allure.attach(redact.text("\n".join(evidence.notes)), name="notes", attachment_type=allure.attachment_type.TEXT)


def attach_findings(findings: Sequence[Finding]) -> None:
    """A grouped failure's items, one paragraph each with its requirement ids, level and evidence (the failure
    message lists them too; this attachment keeps them readable beside the HTTP exchanges)."""
    parts = []
    for n, f in enumerate(findings, 1):
        lines = [f"{n}. {', '.join(f.requirements) or 'uncited'} ({f.level})", f"   Expected: {f.expected}",
                 f"   Actual:   {f.actual}"]
        lines += [f"   Detail:   {f.detail}"] if f.detail else []
        lines += [f"   Evidence: {f.evidence}"] if f.evidence else []
        parts.append("\n".join(lines))
    allure.attach(redact.text("\n\n".join(parts)), name=f"failed expectations ({len(findings)})",
                  attachment_type=allure.attachment_type.TEXT)


CATEGORIES = [
    # Allure can sort by status and message text only, so a warning's message starts with its level in brackets
    # ("[SHOULD] ", "[SHOULD NOT] "), after the exception type Allure puts first ("...ConformanceFailure: "); a SHALL
    # failure's does not. The harness itself never reads the level back from text: it is CheckResult.level.
    {"name": "SHALL failures (non-conformant)", "matchedStatuses": ["failed"],
     "messageRegex": r"(?s)^(?!(\S+: )?\[(SHOULD|SHOULD NOT|MAY)\]).*"},
    {"name": "SHOULD findings (warnings)", "matchedStatuses": ["failed"],
     "messageRegex": r"(?s)^(\S+: )?\[(SHOULD|SHOULD NOT|MAY)\].*"},
    {"name": "Could not check (harness or network)", "matchedStatuses": ["broken"]},
    {"name": "Not applicable", "matchedStatuses": ["skipped"]},
]


def write_run_files(alluredir: Path, run: RunResults) -> None:
    """environment.properties, executor.json and categories.json: once per run, from the controller."""
    alluredir.mkdir(parents=True, exist_ok=True)
    env = {
        "harness.version": __version__,
        "python": platform.python_version(),
        "targets": ",".join(run.targets),
        "embedded.reference": str(run.embedded).lower(),
        "reference.faults": ",".join(run.faults) or "none",
    }
    for name, url in run.targets.items():
        if url:
            env[f"target.{name}.fhir_base_url"] = redact.url(url)
    (alluredir / "environment.properties").write_text(
        "".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
    executor = {
        "name": os.environ.get("CI_NAME", "smart-conformance"),
        "type": "ci" if os.environ.get("CI") else "local",
        "buildName": os.environ.get("BUILD_NAME", f"smart-payer-conformance {__version__}"),
        "buildUrl": os.environ.get("BUILD_URL", ""),
        "reportName": "SMART payer conformance",
    }
    (alluredir / "executor.json").write_text(json.dumps(executor, indent=2), encoding="utf-8")
    (alluredir / "categories.json").write_text(json.dumps(CATEGORIES, indent=2), encoding="utf-8")


class AllureRunFilesWriter:
    """Allure's environment, executor and categories files into ``--alluredir`` (the per-test results are
    allure-pytest's own)."""

    destination = "allure"

    def write(self, run: RunResults, out: Path) -> None:
        write_run_files(out, run)
