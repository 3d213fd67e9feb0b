"""The findings page of the Allure report: per target, the things to fix, each with the checks that saw it.

The Allure tree lists checks; a payer's QA lead asks "what do we fix?". This page answers with findings: one per
requirement, level and observed cause (``root_causes.py``, as every report groups them), most severe first, each naming the checks
(in words) that saw it and the evidence line. Checks that could not check are listed after them. It is a global
attachment of the Allure results (``*-globals.json``), so the report's overview reaches it and it counts as no test.

Data only from :class:`~smart_conformance.results.RunResults` (typed, already redacted; redacted again here since a
finding's expected/actual text comes straight from the check).
"""

from __future__ import annotations

import html
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smart_conformance import redact, requirements, root_causes
from smart_conformance.report import titles
from smart_conformance.results import RunResults

TITLE = "Findings"


@dataclass
class Finding:
    """One thing to fix: a requirement broken the same way, seen by one or more checks."""

    level: str
    requirements: tuple[str, ...]
    expected: str
    actual: str
    checks: list[str] = field(default_factory=list)  # titles in words
    check_names: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    curl: str = ""
    detail: str = ""
    expected_by_baseline: str = ""  # the baseline's reason when every check that saw it is a known failure

    @property
    def warning(self) -> bool:
        return self.level in requirements.WARNING_LEVELS


@dataclass
class TargetFindings:
    target: str
    findings: list[Finding]
    could_not_check: list[tuple[str, str]]  # (title, first line of the reason)

    @property
    def shall(self) -> int:
        return sum(1 for f in self.findings if not f.warning)

    @property
    def should(self) -> int:
        return sum(1 for f in self.findings if f.warning)

    def headline(self) -> str:
        n = len(self.findings)
        text = f"{n} finding{'' if n == 1 else 's'} ({self.shall} SHALL, {self.should} SHOULD)"
        if self.could_not_check:
            text += f"; {len(self.could_not_check)} check(s) could not check"
        return text + "."


def title_of(row: dict[str, Any]) -> str:
    """The check's title as the Allure tree shows it (from the suite's source; else from the result's own doc)."""
    target, nodeid = str(row.get("target", "")), str(row.get("nodeid", ""))
    named = titles.from_nodeid(nodeid, target)
    if named is not None:
        return named.title
    case = titles.case_of(titles.param_id_of(nodeid), target)
    return titles.check_title(str(row.get("doc") or "").strip(), str(row["check"]), case, target)


def collect(run: RunResults) -> list[TargetFindings]:
    """Per target (sorted), its findings: the run's root causes (``root_causes.py``), most severe first."""
    rows, _ = run.marked()
    grouped = root_causes.group(rows)
    by_nodeid = {str(r["nodeid"]): r for r in rows}
    out = []
    for target in sorted({str(r["target"]) for r in rows} | set(run.targets)):
        findings = []
        for cause in grouped.get(target, []):
            found = Finding(level=cause.level, requirements=cause.requirements, expected=redact.text(cause.expected),
                            actual=redact.text(cause.actual), detail=redact.text(cause.detail),
                            curl=redact.text(cause.curl), expected_by_baseline=cause.baseline_reason,
                            evidence=[redact.text(e) for e in cause.evidences])
            for seen in cause.seen:
                title = title_of(by_nodeid.get(seen.nodeid) or {"target": target, "nodeid": seen.nodeid,
                                                                "check": seen.check, "doc": seen.doc})
                if title not in found.checks:
                    found.checks.append(title)
                    found.check_names.append(seen.check)
            findings.append(found)
        mine = sorted((r for r in rows if r["target"] == target), key=lambda r: str(r["nodeid"]))
        broken = [(title_of(r), redact.text(str(r.get("message") or "").removeprefix("could not check: ")
                                            .splitlines()[0] if r.get("message") else ""))
                  for r in mine if r["outcome"] == "broken"]
        out.append(TargetFindings(target, findings, broken))
    return out


def render_html(page: TargetFindings) -> str:
    """A standalone page (the Allure global attachment): the headline, then each finding with its checks."""
    e = html.escape
    catalog = requirements.catalog()
    parts = [f"<h2>{e(TITLE)}: {e(page.target)}</h2>", f"<p class='headline'>{e(page.headline())}</p>"]
    if not page.findings:
        parts.append("<p>No SHALL or SHOULD requirement was found broken.</p>")
    else:
        parts.append("<ol class='findings'>")
        for f in page.findings:
            reqs = ", ".join(f"<a href='{e(catalog[r].url)}'>{e(r)}</a>" if r in catalog else e(r)
                             for r in f.requirements) or "uncited"
            kind = "warning" if f.warning else "failure"
            known = f" <b>EXPECTED</b> (baseline: {e(f.expected_by_baseline)})" if f.expected_by_baseline else ""
            rows = [f"<li class='finding {kind}'><p><b class='level'>{e(f.level)}</b> {reqs}{known}</p>",
                    f"<p>Expected: {e(f.expected)}<br>Actual: {e(f.actual)}</p>"]
            if f.detail:
                rows.append(f"<p>Detail: {e(f.detail)}</p>")
            rows.append(f"<p>Seen by {len(f.checks)} check{'' if len(f.checks) == 1 else 's'}:</p><ul class='checks'>"
                        + "".join(f"<li class='check'>{e(t)} <code>{e(n)}</code></li>"
                                  for t, n in zip(f.checks, f.check_names, strict=True)) + "</ul>")
            if f.evidence:
                rows.append("<p>Evidence: " + "<br>".join(f"<code>{e(x)}</code>" for x in f.evidence) + "</p>")
            if f.curl:
                rows.append(f"<p>Reproduce with: <code>{e(f.curl)}</code></p>")
            parts.append("".join(rows) + "</li>")
        parts.append("</ol>")
    if page.could_not_check:
        parts.append(f"<h3>Could not check ({len(page.could_not_check)})</h3><ul class='could-not-check'>"
                     + "".join(f"<li>{e(t)}: {e(why)}</li>" for t, why in page.could_not_check) + "</ul>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + e(f"{TITLE}: {page.target}") +
            "</title><style>body{font-family:sans-serif}li.finding{margin-bottom:1em}"
            "li.failure .level{color:#c00}li.warning .level{color:#b60}code{word-break:break-all}</style></head><body>"
            + "".join(parts) + "</body></html>")


def write_allure(alluredir: Path, run: RunResults) -> list[TargetFindings]:
    """One HTML page per target, listed in a ``*-globals.json`` (Allure 3 shows it under "Global Attachments" on the
    overview; the report build turns it into a page Allure 2 shows too)."""
    alluredir.mkdir(parents=True, exist_ok=True)
    pages = collect(run)
    attachments = []
    for page in pages:
        source = f"{uuid.uuid4()}-attachment.html"
        (alluredir / source).write_text(render_html(page), encoding="utf-8")
        attachments.append({"name": f"{TITLE}: {page.target} — {page.headline()}", "source": source,
                            "type": "text/html", "timestamp": int(time.time() * 1000)})
    if attachments:
        (alluredir / f"{uuid.uuid4()}-globals.json").write_text(
            json.dumps({"attachments": attachments, "errors": []}, indent=2, ensure_ascii=False), encoding="utf-8")
    return pages
