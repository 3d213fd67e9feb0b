"""The FHIR Implementer's Safety Checklist matrix: for each SAFETY-* requirement, how it stands for one target.

``automated``: checks citing it ran, with their outcomes; ``attested``: the target's attestation file answers it
(answer, by, date, evidence; ``stale`` when older than the file's ``max_age_days``); ``open``: neither.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from smart_conformance import requirements
from smart_conformance.report.attestations import Attestations

PREFIX = "SAFETY-"
STATUSES = ("automated", "attested", "open")


def _order(rid: str) -> tuple[int, str]:
    match = re.search(r"(\d+)$", rid)
    return (int(match.group(1)) if match else 0, rid)


def build(results: list[dict[str, Any]], attestations: Attestations | None = None,
          catalog: dict[str, requirements.Requirement] | None = None) -> dict[str, Any]:
    """The matrix for one target, from that target's result records and its (optional) attestations."""
    known = requirements.catalog() if catalog is None else catalog
    items = []
    for rid in sorted((i for i in known if i.startswith(PREFIX)), key=_order):
        req = known[rid]
        ran = [r for r in results if rid in (r.get("requirements") or [])]
        row: dict[str, Any] = {"id": rid, "item": req.checklist_item or "", "section": req.section, "text": req.text,
                               "url": req.url, "verification": req.verification}
        att = attestations.items.get(rid) if attestations else None
        if ran:
            row["status"] = "automated"
            row["checks"] = [{"check": r["check"], "nodeid": r["nodeid"], "outcome": r["outcome"],
                              **({"expected": True} if r.get("expected") else {})}
                             for r in sorted(ran, key=lambda r: r["nodeid"])]
        elif att:
            row["status"] = "attested"
        else:
            row["status"] = "open"
        if att:
            row["attestation"] = att.as_dict()
        items.append(row)
    counts = Counter(row["status"] for row in items)
    doc: dict[str, Any] = {"counts": {s: counts.get(s, 0) for s in STATUSES} | {"total": len(items)}, "items": items}
    if attestations:
        doc["attestations_file"] = str(attestations.file)
        doc["stale"] = attestations.stale
        doc["unknown_ids"] = attestations.unknown
        doc["counts"]["stale"] = sum(1 for row in items if row.get("attestation", {}).get("stale"))
    return doc


def _cell(row: dict[str, Any]) -> str:
    if row["status"] == "automated":
        outcomes = Counter(c["outcome"] for c in row["checks"])
        return "automated: " + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
    if row["status"] == "attested":
        att = row["attestation"]
        return f"attested **{att['answer']}**{' (STALE)' if att['stale'] else ''}"
    return "open (black-box check not run)" if row["verification"] == "black-box" else "open"


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: dict[str, Any]) -> list[str]:
    c = doc["counts"]
    out = ["### FHIR Implementer's Safety Checklist", "",
           f"{c['total']} items: {c['automated']} automated, {c['attested']} attested"
           f"{' (' + str(c['stale']) + ' stale)' if c.get('stale') else ''}, {c['open']} open.", ""]
    if doc.get("unknown_ids"):
        out += [f"Attestations for ids the catalog does not know (ignored): {', '.join(doc['unknown_ids'])}.", ""]
    out += ["| requirement | what it asks | status | by / date | evidence |", "|---|---|---|---|---|"]
    for row in doc["items"]:
        att = row.get("attestation")
        who = f"{_esc(att['by'])}, {att['date']}" if att and row["status"] == "attested" else ""
        evidence = _esc(att["evidence"]) if att and row["status"] == "attested" else (
            ", ".join(f"`{c['check']}`" for c in row.get("checks", [])))
        out.append(f"| [{row['id']}]({row['url']}) | {_esc(row['text'])} | {_cell(row)} | {who} | {evidence} |")
    out.append("")
    return out
