"""SARIF 2.1.0 (``reports/results.sarif``) for code-scanning dashboards (e.g. GitHub's upload-sarif action).

Rules: every requirement a check cited in this run. Results: one per violated requirement per failing check per
target (SHALL → ``error``, SHOULD/MAY → ``warning``); the location is the suite file of the check plus a logical
location ``target/check``. Baselined (expected) failures carry a SARIF suppression, so dashboards show them as
accepted rather than new. Could-not-check outcomes are not findings about the target and are left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from smart_conformance import __version__, paths, redact, requirements
from smart_conformance.results import CheckResult, RunResults, rows

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_NAME = "smart-payer-conformance"
INFO_URI = "https://hl7.org/fhir/smart-app-launch/"


def _level(req: requirements.Requirement | None, outcome: str) -> str:
    if outcome == "warning" or (req is not None and req.is_warning_level):
        return "warning"
    return "error"


def _message(r: dict[str, Any], req: requirements.Requirement | None) -> str:
    lines = [ln.strip() for ln in redact.text(r.get("message", "")).splitlines() if ln.strip()]
    detail = [next((ln for ln in lines if ln.startswith(p)), "") for p in ("Expected:", "Actual:")]
    item = next((i for i in r.get("findings") or () if req is not None and req.id in (i.get("requirements") or ())),
                None)  # a grouped failure: the expectation that broke this requirement
    if item is not None:
        detail = [f"Expected: {redact.text(item.get('expected', ''))}", f"Actual:   {redact.text(item.get('actual', ''))}"]
    head = f"[{r['target']}] {r['check']}" + (f": {r['doc']}" if r.get("doc") else "")
    body = [d for d in detail if d] or lines[:1]
    if req is not None:
        body.append(f"Requirement: {req.id} ({req.level}) — {req.text}")
    return "\n".join([head, *body])


def _uri(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def build(results: Sequence[CheckResult | Mapping[str, Any]],
          catalog: dict[str, requirements.Requirement] | None = None) -> dict[str, Any]:
    results = rows(results)
    known = requirements.catalog() if catalog is None else catalog
    checked = sorted({i for r in results for i in r.get("requirements") or [] if i in known})
    rules = [{"id": i, "name": i.replace("-", ""),
              "shortDescription": {"text": known[i].text},
              "fullDescription": {"text": f"{known[i].section}: {known[i].text}" if known[i].section else known[i].text},
              "helpUri": known[i].url,
              "defaultConfiguration": {"level": "warning" if known[i].is_warning_level else "error"},
              "properties": {"level": known[i].level, "verification": known[i].verification,
                             "source": known[i].source, "tags": [known[i].source, known[i].level]}}
             for i in checked]
    index = {rule["id"]: n for n, rule in enumerate(rules)}
    out: list[dict[str, Any]] = []
    for r in sorted(results, key=lambda r: (r["target"], r["nodeid"])):
        if r["outcome"] not in ("failed", "warning"):
            continue
        ids = [i for i in (r.get("violated") or r.get("requirements") or []) if i in index]
        for rid in ids:
            req = known[rid]
            result: dict[str, Any] = {
                "ruleId": rid, "ruleIndex": index[rid], "level": _level(req, r["outcome"]),
                "message": {"text": _message(r, req)},
                "locations": [{
                    "physicalLocation": {"artifactLocation": {"uri": _uri(r["nodeid"]), "uriBaseId": "SUITES"}},
                    "logicalLocations": [{"name": r["check"], "fullyQualifiedName": f"{r['target']}/{r['check']}",
                                          "kind": "function"}],
                }],
                "partialFingerprints": {"smartConformance/v1": f"{r['target']}/{r['nodeid']}/{rid}"},
                "properties": {"target": r["target"], "area": r["area"], "check": r["check"],
                               "nodeid": r["nodeid"], "outcome": r["outcome"]},
            }
            if r.get("expected"):
                result["suppressions"] = [{"kind": "external", "status": "accepted",
                                           "justification": r.get("baseline_reason", "baselined")}]
            out.append(result)
    return {
        "$schema": SARIF_SCHEMA, "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {"name": TOOL_NAME, "version": __version__, "semanticVersion": __version__,
                                "informationUri": INFO_URI, "rules": rules}},
            "originalUriBaseIds": {"SUITES": {"uri": paths.suites_dir().resolve().as_uri() + "/",
                                              "description": {"text": "the harness's suites/ folder"}}},
            "results": out,
            "properties": {"targets": sorted({r["target"] for r in results})},
        }],
    }


def write(folder: Path, results: Sequence[CheckResult | Mapping[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.sarif"
    path.write_text(json.dumps(build(results), indent=2, ensure_ascii=False), encoding="utf-8")
    return path


class SarifWriter:
    """results.sarif into ``--smart-reports``; baselined failures carry a suppression."""

    destination = "reports"

    def write(self, run: RunResults, out: Path) -> None:
        from smart_conformance import baseline

        write(out, baseline.apply(run.rows(), run.baseline)[0])
