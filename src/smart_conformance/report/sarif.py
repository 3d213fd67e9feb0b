"""SARIF 2.1.0 (``reports/results.sarif``) for code-scanning dashboards (e.g. GitHub's upload-sarif action).

Rules: every requirement a check cited in this run. Results: one per root cause per target (``root_causes.py``: the
same requirement, level and observed cause, whichever checks saw it; SHALL → ``error``, SHOULD/MAY → ``warning``),
under the strongest requirement it breaks (all of them in ``properties.requirements``); the location is the suite
file of the first check that saw it plus a logical location ``target/check``, every check that saw it is a related
location and listed in ``properties.checks``. A root cause the baseline accepts carries a SARIF suppression, so
dashboards show it as accepted rather than new. Could-not-check outcomes are not findings about the target and are
left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from smart_conformance import __version__, paths, redact, requirements, root_causes
from smart_conformance.results import CheckResult, RunResults, rows

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_NAME = "smart-payer-conformance"
INFO_URI = "https://hl7.org/fhir/smart-app-launch/"


def _level(req: requirements.Requirement | None, cause: root_causes.RootCause) -> str:
    if cause.warning or (req is not None and req.is_warning_level):
        return "warning"
    return "error"


def _message(cause: root_causes.RootCause, req: requirements.Requirement | None) -> str:
    names = list(dict.fromkeys(s.check for s in cause.seen))
    head = (f"[{cause.target}] {cause.cause} (seen by {len(names)} check{'' if len(names) == 1 else 's'}: "
            f"{', '.join(names)})")
    body = [f"Expected: {cause.expected}", f"Actual:   {cause.actual}"]
    if req is not None:
        body.append(f"Requirement: {req.id} ({req.level}) — {req.text}")
    return redact.text("\n".join([head, *body]))


def _location(nodeid: str, target: str, check: str) -> dict[str, Any]:
    return {"physicalLocation": {"artifactLocation": {"uri": _uri(nodeid), "uriBaseId": "SUITES"}},
            "logicalLocations": [{"name": check, "fullyQualifiedName": f"{target}/{check}", "kind": "function"}]}


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
    for target, causes in root_causes.group(results).items():
        for cause in causes:
            ids = [i for i in cause.requirements if i in index]
            if not ids:
                continue
            rid = min(ids, key=lambda i: requirements.LEVEL_RANK.get(known[i].level, 9))  # the strongest it breaks
            req = known[rid]
            first = cause.seen[0]
            result: dict[str, Any] = {
                "ruleId": rid, "ruleIndex": index[rid], "level": _level(req, cause),
                "message": {"text": _message(cause, req)},
                "locations": [_location(first.nodeid, target, first.check)],
                "relatedLocations": [dict(_location(s.nodeid, target, s.check), id=n)
                                     for n, s in enumerate(cause.seen)],
                "partialFingerprints": {"smartConformance/v2": redact.text(f"{target}/{cause.key}")},
                "properties": {"target": target, "area": next((r["area"] for r in results
                                                               if r["nodeid"] == first.nodeid), ""),
                               "check": first.check, "nodeid": first.nodeid, "outcome": first.outcome,
                               "rootCause": redact.text(cause.key), "requirements": list(cause.requirements),
                               "checks": cause.nodeids, "checkNames": [s.check for s in cause.seen]},
            }
            if cause.baselined:
                result["suppressions"] = [{"kind": "external", "status": "accepted",
                                           "justification": cause.baseline_reason}]
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
