"""summary.json and summary.md: the verdict per target, by area and outcome, each failure with its requirement.

Everything in here comes from per-test result records the plugin collects (plain dicts, already redacted).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smart_conformance import __version__, redact, requirements

OUTCOMES = ("passed", "failed", "warning", "broken", "skipped")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BROKEN = 0, 1, 2, 3


def exit_code(results: list[dict[str, Any]], *, strict: bool) -> int:
    counts = Counter(r["outcome"] for r in results)
    if counts["failed"] or (strict and counts["warning"]):
        return EXIT_FAILED
    if counts["broken"]:
        return EXIT_BROKEN
    return EXIT_OK


def build(results: list[dict[str, Any]], *, strict: bool) -> dict[str, Any]:
    by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_target[r["target"]].append(r)
    catalog = requirements.catalog()
    targets = {}
    for name, rows in sorted(by_target.items()):
        areas: dict[str, Counter[str]] = defaultdict(Counter)
        for r in rows:
            areas[r["area"]][r["outcome"]] += 1
        findings = []
        for r in sorted(rows, key=lambda r: (OUTCOMES.index(r["outcome"]), r["area"], r["check"])):
            if r["outcome"] in ("failed", "warning", "broken"):
                findings.append({
                    "outcome": r["outcome"], "area": r["area"], "check": r["check"], "nodeid": r["nodeid"],
                    "title": r.get("doc", ""),
                    "requirements": [{"id": i, "level": catalog[i].level, "url": catalog[i].url, "text": catalog[i].text}
                                     for i in r.get("violated") or r["requirements"] if i in catalog],
                    "message": redact.text(r.get("message", "")),
                })
        totals = Counter(r["outcome"] for r in rows)
        targets[name] = {
            "verdict": _verdict(totals, strict),
            "totals": {o: totals.get(o, 0) for o in OUTCOMES},
            "areas": {a: {o: c.get(o, 0) for o in OUTCOMES} for a, c in sorted(areas.items())},
            "findings": findings,
            "requirements_checked": sorted({i for r in rows for i in r["requirements"]}),
        }
    return {"tool": "smart-payer-conformance", "version": __version__,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "strict": strict,
            "exit_code": exit_code(results, strict=strict), "targets": targets}


def _verdict(totals: Counter[str], strict: bool) -> str:
    if totals["failed"] or (strict and totals["warning"]):
        return "NOT CONFORMANT"
    if totals["broken"]:
        return "INCOMPLETE (could not check everything)"
    if totals["passed"] == 0:
        return "NOTHING CHECKED"
    return "CONFORMANT (for the checks run)" if not totals["warning"] else "CONFORMANT with SHOULD warnings"


def render_markdown(doc: dict[str, Any]) -> str:
    out = ["# SMART payer conformance summary", "",
           f"Generated {doc['generated_at']} by smart-payer-conformance {doc['version']}"
           f"{' (strict: SHOULD findings fail)' if doc['strict'] else ''}.", ""]
    for name, t in doc["targets"].items():
        tot = t["totals"]
        out += [f"## Target `{name}`: {t['verdict']}", "",
                f"{tot['passed']} passed, {tot['failed']} failed, {tot['warning']} warnings, "
                f"{tot['broken']} could not check, {tot['skipped']} not applicable.", "",
                "| area | passed | failed | warnings | could not check | not applicable |",
                "|---|---:|---:|---:|---:|---:|"]
        for area, c in t["areas"].items():
            out.append(f"| {area} | {c['passed']} | {c['failed']} | {c['warning']} | {c['broken']} | {c['skipped']} |")
        out.append("")
        if t["findings"]:
            out += ["### Findings", ""]
            for f in t["findings"]:
                label = {"failed": "FAILED", "warning": "WARNING (SHOULD)", "broken": "COULD NOT CHECK"}[f["outcome"]]
                reqs = ", ".join(f"[{r['id']}]({r['url']}) ({r['level']})" for r in f["requirements"])
                out.append(f"- **{label}** `{f['check']}` ({f['area']}){': ' + f['title'] if f['title'] else ''}  ")
                if reqs:
                    out.append(f"  Requirements: {reqs}  ")
                first = f["message"].strip().splitlines()
                detail = [ln.strip() for ln in first if ln.strip().startswith(("Expected:", "Actual:"))]
                if detail:
                    out.append("  " + " · ".join(detail))
                elif first:
                    out.append(f"  {first[0]}")
            out.append("")
    return "\n".join(out) + "\n"


def render_console(results: list[dict[str, Any]], *, strict: bool) -> str:
    doc = build(results, strict=strict)
    lines = []
    for name, t in doc["targets"].items():
        tot = t["totals"]
        lines.append(f"target {name}: {t['verdict']} — {tot['passed']} passed, {tot['failed']} failed, "
                     f"{tot['warning']} warnings, {tot['broken']} could not check, {tot['skipped']} not applicable")
        for f in t["findings"]:
            ids = ",".join(r["id"] for r in f["requirements"])
            first = f["message"].strip().splitlines()[0] if f["message"].strip() else ""
            lines.append(f"  {f['outcome'].upper():8} {f['check']} [{ids}] {first if f['outcome'] == 'broken' else ''}".rstrip())
    return "\n".join(lines)


def write_all(folder: Path, results: list[dict[str, Any]], *, strict: bool) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    doc = build(results, strict=strict)
    (folder / "summary.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / "summary.md").write_text(render_markdown(doc), encoding="utf-8")
    return doc
