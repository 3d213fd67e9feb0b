"""The FHIR Implementer's Safety Checklist matrix: for each SAFETY-* requirement, how it stands for one target.

An item is evidenced by the checks that cite it or any id in its catalog ``evidenced_by`` list (the mapping is data in
``fixtures/requirements/fhir-safety-checklist.yaml``, not extra citations in the suites).

``automated``: at least one evidencing check ran (not only "not applicable"), and the item's ``result`` is derived from
their outcomes: ``failed`` when any failed, else ``warning`` when any warned, else ``could not check`` when any could
not check, else ``passed`` (every evidencing check that ran passed). ``attested``: no check ran and the target's
attestation file answers it (answer, by, date, evidence; ``stale`` when older than the file's ``max_age_days``).
``open``: neither.

This module only computes data and text; writers (summary, Allure) call it.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from smart_conformance import requirements
from smart_conformance.report.attestations import Attestations
from smart_conformance.results import RunResults

PREFIX = "SAFETY-"
STATUSES = ("automated", "attested", "open")
RESULTS = ("failed", "warning", "could not check", "passed")  # worst first
_OUTCOME_RESULT = {"failed": "failed", "warning": "warning", "broken": "could not check", "passed": "passed"}
TITLE = "FHIR Implementer's Safety Checklist"


def _order(rid: str) -> tuple[int, str]:
    match = re.search(r"(\d+)$", rid)
    return (int(match.group(1)) if match else 0, rid)


def evidence_ids(req: requirements.Requirement) -> tuple[str, ...]:
    """The ids whose checks evidence a checklist item: the item itself, then its ``evidenced_by``."""
    return (req.id, *req.evidenced_by)


def item_result(outcomes: list[str]) -> str | None:
    """The item's result from its evidencing checks' outcomes; None when none of them ran (all not applicable)."""
    ran = {_OUTCOME_RESULT[o] for o in outcomes if o in _OUTCOME_RESULT}
    return next((r for r in RESULTS if r in ran), None)


def build(results: list[dict[str, Any]], attestations: Attestations | None = None,
          catalog: dict[str, requirements.Requirement] | None = None) -> dict[str, Any]:
    """The matrix for one target, from that target's result records and its (optional) attestations."""
    known = requirements.catalog() if catalog is None else catalog
    items = []
    for rid in sorted((i for i in known if i.startswith(PREFIX)), key=_order):
        req = known[rid]
        ids = evidence_ids(req)
        evidencing = [(r, [i for i in ids if i in (r.get("requirements") or [])]) for r in results]
        evidencing = sorted(((r, via) for r, via in evidencing if via), key=lambda pair: pair[0]["nodeid"])
        row: dict[str, Any] = {"id": rid, "item": req.checklist_item or "", "section": req.section, "text": req.text,
                               "url": req.url, "verification": req.verification,
                               "evidenced_by": list(req.evidenced_by)}
        if evidencing:
            row["checks"] = [{"check": r["check"], "nodeid": r["nodeid"], "outcome": r["outcome"],
                              **({"label": _label(r)} if _label(r) != r["check"] else {}),
                              **({"via": via} if via != [rid] else {}),
                              **({"expected": True} if r.get("expected") else {})}
                             for r, via in evidencing]
        result = item_result([r["outcome"] for r, _ in evidencing])
        att = attestations.items.get(rid) if attestations else None
        if result is not None:
            row["status"] = "automated"
            row["result"] = result
        elif att:
            row["status"] = "attested"
        else:
            row["status"] = "open"
        if att:
            row["attestation"] = att.as_dict()
        items.append(row)
    counts = Counter(row["status"] for row in items)
    results_count = Counter(row["result"] for row in items if "result" in row)
    doc: dict[str, Any] = {"counts": {s: counts.get(s, 0) for s in STATUSES} | {"total": len(items)},
                           "results": {r: results_count.get(r, 0) for r in RESULTS},
                           "black_box_open": [row["id"] for row in items
                                              if row["verification"] == "black-box" and row["status"] != "automated"],
                           "items": items}
    if attestations:
        doc["attestations_file"] = str(attestations.file)
        doc["stale"] = attestations.stale
        doc["unknown_ids"] = attestations.unknown
        doc["counts"]["stale"] = sum(1 for row in items if row.get("attestation", {}).get("stale"))
    return doc


def _cell(row: dict[str, Any]) -> str:
    if row["status"] == "automated":
        outcomes = Counter(c["outcome"] for c in row["checks"])
        return f"**{row['result']}** (automated: " + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) + ")"
    if row["status"] == "attested":
        att = row["attestation"]
        return f"attested **{att['answer']}**{' (STALE)' if att['stale'] else ''}"
    if row.get("checks"):
        return "open (evidencing checks not applicable)"
    return "open (black-box check not run)" if row["verification"] == "black-box" else "open"


def _label(record: dict[str, Any]) -> str:
    """The check's name with its parameters when parametrized (``test_x[json]``; the target's id left out)."""
    nodeid, target = str(record.get("nodeid", "")), str(record.get("target", ""))
    inner = nodeid[nodeid.rindex("[") + 1:-1] if nodeid.endswith("]") and "[" in nodeid else ""
    params = inner.removeprefix(target).removeprefix("-") if inner != target else ""
    return f"{record['check']}[{params}]" if params else str(record["check"])


def check_label(check: dict[str, Any]) -> str:
    return str(check.get("label") or check["check"])


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def headline(doc: dict[str, Any]) -> str:
    """One line: how many items are automated (and how they came out), attested and open."""
    c, res = doc["counts"], doc.get("results", {})
    ran = ", ".join(f"{n} {r}" for r, n in res.items() if n)
    return (f"{c['total']} items: {c['automated']} automated{' (' + ran + ')' if ran else ''}, {c['attested']} "
            f"attested{' (' + str(c['stale']) + ' stale)' if c.get('stale') else ''}, {c['open']} open.")


def render_markdown(doc: dict[str, Any]) -> list[str]:
    out = [f"### {TITLE}", "", headline(doc), ""]
    if doc.get("black_box_open"):
        out += [f"Black-box checkable but not automated in this run: {', '.join(doc['black_box_open'])}.", ""]
    if doc.get("unknown_ids"):
        out += [f"Attestations for ids the catalog does not know (ignored): {', '.join(doc['unknown_ids'])}.", ""]
    out += ["| requirement | what it asks | status | by / date | evidence (check: outcome) |", "|---|---|---|---|---|"]
    for row in doc["items"]:
        att = row.get("attestation")
        who = f"{_esc(att['by'])}, {att['date']}" if att and row["status"] == "attested" else ""
        evidence = _esc(att["evidence"]) if att and row["status"] == "attested" else (
            ", ".join(f"`{check_label(c)}`: {c['outcome']}" for c in row.get("checks", [])))
        out.append(f"| [{row['id']}]({row['url']}) | {_esc(row['text'])} | {_cell(row)} | {who} | {evidence} |")
    out.append("")
    return out


def render_html(name: str, doc: dict[str, Any]) -> str:
    """The matrix as a standalone HTML page (the Allure attachment a certifier opens)."""
    e = html.escape
    rows = []
    for row in doc["items"]:
        att = row.get("attestation")
        if row["status"] == "attested" and att:
            evidence = f"{e(att['by'])}, {e(str(att['date']))}: {e(att['evidence'])}"
        else:
            evidence = "<br>".join(f"<code>{e(check_label(c))}</code>: {e(c['outcome'])}"
                                   for c in row.get("checks", []))
        status = row.get("result", row["status"]) if row["status"] == "automated" else _cell(row).replace("*", "")
        rows.append(f"<tr class='{e(row['status'])}'><td><a href='{e(row['url'])}'>{e(row['id'])}</a></td>"
                    f"<td>{e(row['text'])}</td><td>{e(row['status'])}</td><td>{e(status)}</td><td>{evidence}</td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + e(TITLE) + "</title><style>"
            "body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px;vertical-align:top}"
            "table{border-collapse:collapse}tr.open{color:#777}</style></head><body>"
            f"<h2>{e(TITLE)}: {e(name)}</h2><p>{e(headline(doc))}</p><table><tr><th>item</th><th>what it asks</th>"
            "<th>status</th><th>result</th><th>evidence</th></tr>" + "".join(rows) + "</table></body></html>")


class ChecklistAllureWriter:
    """The Safety Checklist page into ``--alluredir`` (registered in ``report/writers.py`` after the run files, whose
    environment.properties it extends)."""

    destination = "allure"

    def write(self, run: RunResults, out: Path) -> None:
        from smart_conformance.report.summary import load_attestations_for

        attestations = load_attestations_for(run.attestations)
        by_target: dict[str, list[dict[str, Any]]] = {}
        for row in run.rows():
            by_target.setdefault(row["target"], []).append(row)
        docs = {name: {"checklist": build(rows, att if isinstance(att := attestations.get(name), Attestations)
                                          else None)} for name, rows in sorted(by_target.items())}
        write_allure(out, {"targets": docs})


def write_allure(alluredir: Path, summary: dict[str, Any]) -> None:
    """One Allure result per target holding the matrix (HTML and JSON attachments, markdown description), under the
    epic of the checklist, and a line per target in environment.properties: the matrix without reading JSON."""
    alluredir.mkdir(parents=True, exist_ok=True)
    env_lines = []
    for name, target in (summary.get("targets") or {}).items():
        doc = target.get("checklist")
        if not doc:
            continue
        page, data = f"{uuid.uuid4()}-attachment.html", f"{uuid.uuid4()}-attachment.json"
        (alluredir / page).write_text(render_html(name, doc), encoding="utf-8")
        (alluredir / data).write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
        result = {  # status "unknown": a page, not a check, so Allure's passed/failed counts stay the checks' own;
            # the HTML report turns it into a global attachment (report/presentation.py), so it shows as no "Unknown"
            "uuid": str(uuid.uuid4()), "historyId": f"safety-checklist-{name}",
            "testCaseId": f"safety-checklist-{name}",
            "name": f"{TITLE} [{name}]", "fullName": f"safety_checklist.matrix[{name}]",
            "status": "unknown", "stage": "finished",
            "statusDetails": {"message": headline(doc)},
            "description": "\n".join(render_markdown(doc)),
            "labels": [{"name": "epic", "value": TITLE}, {"name": "feature", "value": "Checklist matrix"},
                       {"name": "story", "value": name}, {"name": "parentSuite", "value": TITLE},
                       {"name": "suite", "value": name},
                       {"name": "report_page", "value": "checklist"}],  # the HTML report shows it as a page
            "attachments": [{"name": "Safety Checklist matrix", "source": page, "type": "text/html"},
                            {"name": "Safety Checklist matrix (JSON)", "source": data, "type": "application/json"}],
        }
        (alluredir / f"{result['uuid']}-result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        env_lines.append(f"safety.checklist.{name}={headline(doc)}\n")
    if env_lines:
        with (alluredir / "environment.properties").open("a", encoding="utf-8") as env:
            env.writelines(env_lines)
