"""Allure metadata derived from what the suites already declare: area, module, check, cited requirements.

Only called on the process that runs the test (never the xdist controller, where allure calls break).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import allure
import pytest

from smart_conformance import __version__, redact, requirements
from smart_conformance.http import Evidence

SEVERITY = {
    "SHALL": allure.severity_level.CRITICAL,
    "SHALL NOT": allure.severity_level.CRITICAL,
    "SHOULD": allure.severity_level.NORMAL,
    "SHOULD NOT": allure.severity_level.NORMAL,
    "MAY": allure.severity_level.MINOR,
}

AREA_TITLES = {
    "discovery": "Discovery",
    "launch": "Standalone launch",
    "tokens": "Tokens and id_token",
    "scopes": "Scopes and member isolation",
    "fhir_security": "FHIR security behaviours",
    "payer_data": "Payer data (CARIN Blue Button)",
    "tls": "Transport security (TLS)",
    "backend_services": "SMART Backend Services (client credentials, private_key_jwt)",
    "bulk_export": "Bulk Data export ($export)",
    "safety_checklist": "FHIR Implementer's Safety Checklist",
}


def label_test(item: pytest.Item, target: str, area: str, check: str, ids: tuple[str, ...]) -> None:
    module_doc = (getattr(item.module, "__doc__", None) or "").strip().splitlines() if hasattr(item, "module") else []
    reqs = requirements.lookup(ids)
    top = requirements.strongest(reqs)
    allure.dynamic.epic(AREA_TITLES.get(area, area))
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


CATEGORIES = [
    # A warning's message starts with its level in brackets ("[SHOULD] ", "[SHOULD NOT] "), after the exception type
    # Allure puts first ("smart_conformance.checks.ConformanceFailure: "); a SHALL failure's does not.
    {"name": "SHALL failures (non-conformant)", "matchedStatuses": ["failed"],
     "messageRegex": r"(?s)^(?!(\S+: )?\[(SHOULD|SHOULD NOT|MAY)\]).*"},
    {"name": "SHOULD findings (warnings)", "matchedStatuses": ["failed"],
     "messageRegex": r"(?s)^(\S+: )?\[(SHOULD|SHOULD NOT|MAY)\].*"},
    {"name": "Could not check (harness or network)", "matchedStatuses": ["broken"]},
    {"name": "Not applicable", "matchedStatuses": ["skipped"]},
]


def write_run_files(alluredir: Path, targets: list[str], state: Any) -> None:
    """environment.properties, executor.json and categories.json: once per run, from the controller."""
    alluredir.mkdir(parents=True, exist_ok=True)
    env = {
        "harness.version": __version__,
        "python": platform.python_version(),
        "targets": ",".join(targets),
        "embedded.reference": str(bool(getattr(state, "embedded", False))).lower(),
        "reference.faults": ",".join(getattr(state, "faults", ())) or "none",
    }
    for name in targets:
        tgt = getattr(state, "targets", {}).get(name)
        if tgt is not None:
            env[f"target.{name}.fhir_base_url"] = redact.url(tgt.fhir_base_url)
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
