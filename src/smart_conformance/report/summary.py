"""summary.json and summary.md: the findings to fix, then the verdict per target, by area and outcome.

Built from the run's typed results (``results.CheckResult``, read here in their JSON form, already redacted).
summary.md opens with ``## Findings``: per target, "N findings (x SHALL, y SHOULD)" and the root causes
(``root_causes.py``: same requirement, level and observed cause = one finding, with the checks that saw it), most
severe first. summary.json carries them per target as ``root_causes`` (with ``finding_counts``); its ``findings`` stay
what they were, one entry per check that did not pass (``report/merge.py`` and older readers rely on that shape: the
file only ever gains fields). ``run`` records what was run (per target, its file or the embedded reference, faults
and variants), which ``smart-conformance bundle`` reads. ``exit_code`` is written for humans and merging; the exit
status itself is set by the plugin from ``RunResults.exit_code``, with the same rule.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smart_conformance import __version__, redact, requirements, root_causes, tally
from smart_conformance import baseline as baseline_mod
from smart_conformance.report import checklist
from smart_conformance.report.attestations import AttestationError, Attestations
from smart_conformance.report.attestations import load as load_attestations
from smart_conformance.results import CheckResult, ExitCode, RunResults
from smart_conformance.results import rows as as_rows

OUTCOMES = ("passed", "failed", "warning", "broken", "skipped")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BROKEN = ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE, ExitCode.BROKEN

Results = Sequence[CheckResult | Mapping[str, Any]]


def exit_code(results: list[dict[str, Any]], *, strict: bool, unmet_baseline: int = 0) -> int:
    """From rows marked by ``baseline.apply``: the rule of ``root_causes.exit_status`` (a SHALL finding no baseline
    accepts, or strict any, or a stale entry → 1; a check that could not check → 3; else 0)."""
    return root_causes.exit_status_of_rows(results, strict=strict, unmet_baseline=unmet_baseline)


def build(results: Results, *, strict: bool, baseline: baseline_mod.Baseline | None = None,
          attestations: Mapping[str, Attestations | str | None] | None = None,
          previous: dict[str, Any] | None = None, run: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The summary document. ``baseline``: known failures; ``attestations``: per target, its loaded attestations (or
    the error text when its file could not be used); ``previous``: the last run's summary.json, for what changed;
    ``run``: what was run (:func:`what_was_run`)."""
    results, unmet = baseline_mod.apply(as_rows(results), baseline)
    grouped = root_causes.group(results)
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
                finding = {
                    "outcome": r["outcome"], "area": r["area"], "check": r["check"], "nodeid": r["nodeid"],
                    "title": r.get("doc", ""),
                    "requirements": [{"id": i, "level": catalog[i].level, "url": catalog[i].url, "text": catalog[i].text}
                                     for i in r.get("violated") or r["requirements"] if i in catalog],
                    "message": redact.text(r.get("message", "")),
                }
                if r.get("level"):
                    finding["level"] = r["level"]
                if len(r.get("findings") or ()) > 1:
                    finding["items"] = [_item(i, catalog) for i in r["findings"]]
                if r.get("expected"):
                    finding["expected"] = True
                    finding["baseline_reason"] = r.get("baseline_reason", "")
                findings.append(finding)
        totals = Counter(r["outcome"] for r in rows)
        known_failures = Counter(r["outcome"] for r in rows if r.get("expected"))
        target_unmet = [u for u in unmet if u["target"] == name]
        causes = grouped.get(name, [])
        shall, should = root_causes.counts(causes)
        targets[name] = {
            "verdict": _verdict(totals, strict, known_failures, len(target_unmet)),
            "finding_counts": {"findings": len(causes), "SHALL": shall, "SHOULD": should,
                               "expected": sum(1 for c in causes if c.baselined)},
            "root_causes": [_root_cause(c, catalog) for c in causes],
            "totals": {o: totals.get(o, 0) for o in OUTCOMES} | {"expected": sum(known_failures.values())},
            "areas": {a: {o: c.get(o, 0) for o in OUTCOMES} for a, c in sorted(areas.items())},
            "findings": findings,
            "requirements_checked": sorted({i for r in rows for i in r["requirements"]}),
            "results": {r["nodeid"]: r["outcome"] for r in sorted(rows, key=lambda r: r["nodeid"])},
        }
        if baseline is not None:
            targets[name]["baseline_unmet"] = target_unmet
        att = (attestations or {}).get(name)
        targets[name]["checklist"] = checklist.build(rows, att if isinstance(att, Attestations) else None)
        if isinstance(att, str):
            targets[name]["checklist"]["attestations_error"] = att
        if previous is not None:
            targets[name]["changes"] = _changes(name, rows, previous)
    doc = {"tool": "smart-payer-conformance", "version": __version__,
           "generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "strict": strict,
           "exit_code": exit_code(results, strict=strict, unmet_baseline=len(unmet)), "targets": targets}
    if baseline is not None:
        doc["baseline"] = {"file": str(baseline.file), "entries": len(baseline.entries),
                           "expected_failures": sum(1 for r in results if r.get("expected")), "unmet": unmet}
    if previous is not None:
        doc["previous_run"] = previous.get("generated_at", "")
    if run is not None:
        doc["run"] = dict(run)
    return doc


def what_was_run(run: RunResults) -> dict[str, Any]:
    """Per target, where it came from: its target file, or the embedded reference with the faults and variants that
    were on (so ``smart-conformance bundle`` finds the target YAML without being told). No secret: paths and names."""
    if run.embedded:
        per_target = {name: {"source": EMBEDDED_REFERENCE, "faults": list(run.faults), "variants": list(run.variants)}
                      for name in run.targets}
        return {"embedded_reference": True, "faults": list(run.faults), "variants": list(run.variants),
                "targets": per_target}
    return {"embedded_reference": False,
            "targets": {name: {"source": str(Path(file).resolve())} for name, file in run.target_files.items()}}


EMBEDDED_REFERENCE = "embedded reference"


def _root_cause(cause: root_causes.RootCause, catalog: Mapping[str, requirements.Requirement]) -> dict[str, Any]:
    """One finding to fix, as summary.json holds it (texts redacted again: they come straight from the checks)."""
    out = cause.as_dict()
    for key in ("cause", "key", "expected_text", "actual", "evidence", "curl", "detail"):
        if key in out:
            out[key] = redact.text(str(out[key]))
    if "expectations" in out:
        out["expectations"] = [redact.text(e) for e in out["expectations"]]
    out["requirement_links"] = [{"id": i, "level": catalog[i].level, "url": catalog[i].url, "text": catalog[i].text}
                                for i in cause.requirements if i in catalog]
    out["titles"] = [s.doc for s in cause.seen]
    return out


FAILING = ("failed", "warning", "broken")


def _item(raw: dict[str, Any], catalog: Mapping[str, requirements.Requirement]) -> dict[str, Any]:
    """One failed expectation of a grouped failure, with its own requirements, level and evidence."""
    return {"requirements": [{"id": i, "level": catalog[i].level, "url": catalog[i].url}
                             for i in raw.get("requirements") or () if i in catalog],
            "level": raw.get("level", ""), "expected": redact.text(raw.get("expected", "")),
            "actual": redact.text(raw.get("actual", "")), "evidence": redact.text(raw.get("evidence", ""))}


def _changes(name: str, rows: list[dict[str, Any]], previous: dict[str, Any]) -> dict[str, Any]:
    """New failures and fixed ones against the previous run's summary.json, by test node id."""
    before = (previous.get("targets") or {}).get(name)
    if not isinstance(before, dict):
        return {"previous": False, "new_failures": [], "fixed": []}
    old: dict[str, str] = dict(before.get("results") or {})
    for f in before.get("findings") or []:  # summaries written before per-test results were kept
        old.setdefault(f.get("nodeid", ""), f.get("outcome", ""))
    new_failures, fixed = [], []
    for r in sorted(rows, key=lambda r: r["nodeid"]):
        was = old.get(r["nodeid"])
        if r["outcome"] in FAILING and was not in FAILING:
            new_failures.append({"check": r["check"], "nodeid": r["nodeid"], "outcome": r["outcome"],
                                 "previous": was or "not run"})
        elif r["outcome"] == "passed" and was in FAILING:
            fixed.append({"check": r["check"], "nodeid": r["nodeid"], "previous": was})
    return {"previous": True, "new_failures": new_failures, "fixed": fixed}


def _verdict(totals: Counter[str], strict: bool, known: Counter[str] | None = None, unmet: int = 0) -> str:
    known = known or Counter()
    failed = totals["failed"] - known["failed"]
    warnings = totals["warning"] - known["warning"]
    if failed or (strict and warnings):
        return "NOT CONFORMANT"
    if totals["failed"] or (strict and totals["warning"]):
        return f"NOT CONFORMANT (known failures only: {sum(known.values())} baselined)"
    if unmet:
        return "BASELINE STALE (expected failures did not happen)"
    if totals["broken"]:
        return "INCOMPLETE (could not check everything)"
    if totals["passed"] == 0:
        return "NOTHING CHECKED"
    return "CONFORMANT (for the checks run)" if not totals["warning"] else "CONFORMANT with SHOULD warnings"


def render_markdown(doc: dict[str, Any]) -> str:
    out = ["# SMART payer conformance summary", "",
           (f"Generated {doc['generated_at']} by smart-payer-conformance {doc['version']}"
            f"{' (strict: SHOULD findings fail)' if doc['strict'] else ''}."), ""]
    out += render_findings(doc)
    for name, t in doc["targets"].items():
        tot = t["totals"]
        out += [f"## Target `{name}`: {t['verdict']}", "",
                (f"{tot['passed']} passed, {tot['failed']} failed, {tot['warning']} warnings, "
                 f"{tot['broken']} could not check, {tot['skipped']} not applicable."), ""]
        if tally_line(t):
            out += [tally_line(t) + ".", ""]
        out += ["| area | passed | failed | warnings | could not check | not applicable |",
                "|---|---:|---:|---:|---:|---:|"]
        for area, c in t["areas"].items():
            out.append(f"| {area} | {c['passed']} | {c['failed']} | {c['warning']} | {c['broken']} | {c['skipped']} |")
        out.append("")
        changes = t.get("changes")
        if changes and changes["previous"]:
            out += [f"### Changed since previous run ({doc.get('previous_run', '')})", ""]
            if not changes["new_failures"] and not changes["fixed"]:
                out.append("No new failures and nothing fixed.")
            for c in changes["new_failures"]:
                out.append(f"- **new {c['outcome']}** `{c['check']}` (was {c['previous']})")
            for c in changes["fixed"]:
                out.append(f"- **fixed** `{c['check']}` (was {c['previous']})")
            out.append("")
        if t.get("baseline_unmet"):
            out += ["### Expected failure did not happen (baseline is stale)", ""]
            for u in t["baseline_unmet"]:
                out.append(f"- `{u['check']}` {u['outcome']}; baselined because: {u['reason']}. "
                           "Remove it from the baseline file.")
            out.append("")
        if t["findings"]:
            out += ["### Checks that did not pass", ""]
            for f in t["findings"]:
                label = {"failed": "FAILED", "warning": f"WARNING ({f.get('level') or 'SHOULD'})",
                         "broken": "COULD NOT CHECK"}[f["outcome"]]
                if f.get("expected"):
                    label = f"EXPECTED {label} (baseline: {f['baseline_reason']})"
                reqs = ", ".join(f"[{r['id']}]({r['url']}) ({r['level']})" for r in f["requirements"])
                out.append(f"- **{label}** `{f['check']}` ({f['area']}){': ' + f['title'] if f['title'] else ''}  ")
                if reqs:
                    out.append(f"  Requirements: {reqs}  ")
                first = f["message"].strip().splitlines()
                detail = [ln.strip() for ln in first if ln.strip().startswith(("Expected:", "Actual:"))]
                if f.get("items"):
                    out.append(f"  {len(f['items'])} expectations failed:  ")
                    for n, item in enumerate(f["items"], 1):
                        ids = ", ".join(f"[{r['id']}]({r['url']})" for r in item["requirements"]) or "uncited"
                        out.append(f"  {n}. {ids} ({item['level']}): Expected: {item['expected']} · "
                                   f"Actual: {item['actual']}  ")
                elif detail:
                    out.append("  " + " · ".join(detail))
                elif first:
                    out.append(f"  {first[0]}")
            out.append("")
        if "checklist" in t:
            if t["checklist"].get("attestations_error"):
                out += [f"Attestations not used: {t['checklist']['attestations_error']}", ""]
            out += checklist.render_markdown(t["checklist"])
    return "\n".join(out) + "\n"


def _finding_counts(t: Mapping[str, Any]) -> dict[str, int]:
    """A target section's counts of root causes (a summary written before they were kept: from its check entries)."""
    counts = t.get("finding_counts")
    if isinstance(counts, dict):
        return counts
    rows = [f for f in t.get("findings") or () if f.get("outcome") in ("failed", "warning")]
    shall = sum(1 for f in rows if f["outcome"] == "failed")
    return {"findings": len(rows), "SHALL": shall, "SHOULD": len(rows) - shall,
            "expected": sum(1 for f in rows if f.get("expected"))}


def headline(t: Mapping[str, Any]) -> str:
    c = _finding_counts(t)
    n = c["findings"]
    text = f"{n} finding{'' if n == 1 else 's'} ({c['SHALL']} SHALL, {c['SHOULD']} SHOULD)"
    return text + (f", {c['expected']} of them accepted by the baseline" if c.get("expected") else "")


def render_findings(doc: Mapping[str, Any]) -> list[str]:
    """summary.md's opening: per target, the findings to fix (root causes), most severe first, each with its
    requirement(s), what was expected and observed, and the checks that saw it."""
    out = ["## Findings", ""]
    several = len(doc["targets"]) > 1
    for name, t in doc["targets"].items():
        causes = t.get("root_causes")
        if several:
            out += [f"### `{name}`: {headline(t)}", ""]
        else:
            out += [f"{headline(t)} for target `{name}`" + (", most severe first:" if causes else "."), ""]
        if causes is None:
            out += ["(This summary predates root causes: see the checks that did not pass below.)", ""]
            continue
        for n, c in enumerate(causes, 1):
            links = {r["id"]: r for r in c.get("requirement_links") or ()}
            reqs = ", ".join(f"[{i}]({links[i]['url']})" if i in links else i for i in c["requirements"]) or "uncited"
            known = f" EXPECTED (baseline: {c['baseline_reason']})" if c.get("expected") else ""
            out.append(f"{n}. **{c['level']}**{known} {reqs}: {c['cause']}  ")
            out.append(f"   Expected: {c['expected_text']} · Observed: {c['actual']}  ")
            more = len(c.get("expectations") or ()) - 1
            if more > 0:
                out.append(f"   (and {more} other expectation{'' if more == 1 else 's'} broken the same way)  ")
            names = c.get("check_names") or c["checks"]
            out.append(f"   Seen by {len(names)} check{'' if len(names) == 1 else 's'}: "
                       + ", ".join(f"`{x}`" for x in dict.fromkeys(names)))
        out.append("")
    return out


def render_console(results: RunResults | Results, *, strict: bool = False,
                   baseline: baseline_mod.Baseline | None = None) -> str:
    """The console summary (pytest's terminal summary): per target its verdict, the findings count and the top of
    the list to fix, then one line per check that did not pass."""
    tallies: Mapping[str, Mapping[str, int]] | None = None
    if isinstance(results, RunResults):
        results, strict, baseline, tallies = results.results, results.strict, results.baseline, results.tallies
    doc = build(results, strict=strict, baseline=baseline)
    if tallies is not None:
        add_tallies(doc, tallies)
    lines = []
    for name, t in doc["targets"].items():
        tot = t["totals"]
        counts = f"; {tally_line(t)}" if tally_line(t) else ""
        lines.append(f"target {name}: {t['verdict']} — {tot['passed']} passed, {tot['failed']} failed, "
                     f"{tot['warning']} warnings, {tot['broken']} could not check, {tot['skipped']} not applicable"
                     f"{counts}")
        causes = t["root_causes"]
        lines.append(f"  {headline(t)}" + (":" if causes else ""))
        for n, c in enumerate(causes[:CONSOLE_TOP], 1):
            seen = len(c["checks"])
            tag = "EXPECTED " if c.get("expected") else ""
            lines.append(f"   {n}. {tag}{c['level']} {', '.join(c['requirements']) or 'uncited'}: {c['cause'][:140]} "
                         f"({seen} check{'' if seen == 1 else 's'})")
        if len(causes) > CONSOLE_TOP:
            lines.append(f"   … and {len(causes) - CONSOLE_TOP} more (summary.md)")
        if t["findings"]:
            lines.append("  checks:")
        for f in t["findings"]:
            ids = ",".join(r["id"] for r in f["requirements"])
            first = f["message"].strip().splitlines()[0] if f["message"].strip() else ""
            tag = "EXPECTED " if f.get("expected") else ""
            lines.append(f"  {tag}{f['outcome'].upper():8} {f['check']} [{ids}] {first if f['outcome'] == 'broken' else ''}".rstrip())
            for n, item in enumerate(f.get("items") or (), 1):
                lines.append(f"      {n}. [{','.join(r['id'] for r in item['requirements'])}] ({item['level']}) "
                             f"expected {item['expected']}")
        for u in t.get("baseline_unmet", []):
            lines.append(f"  EXPECTED FAILURE DID NOT HAPPEN {u['check']} ({u['outcome']}): remove it from the baseline")
    return "\n".join(lines)


CONSOLE_TOP = 10  # root causes listed in the console; summary.md has them all
PREVIOUS = "previous-summary.json"


def read_previous(folder: Path) -> dict[str, Any] | None:
    """The previous run's summary: ``previous-summary.json`` (the CLI moves it aside before cleaning), else a
    ``summary.json`` still in the folder (plain pytest runs)."""
    for name in (PREVIOUS, "summary.json"):
        try:
            doc = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("targets"), dict):
            return doc
    return None


def load_attestations_for(files: Mapping[str, Path | None]) -> dict[str, Attestations | str | None]:
    """Per target name, its attestations; the one-line error instead when the file cannot be used."""
    out: dict[str, Attestations | str | None] = {}
    for name, file in files.items():
        if file is None:
            out[name] = None
            continue
        try:
            out[name] = load_attestations(file, target=name)
        except AttestationError as exc:
            out[name] = str(exc)
    return out


def add_tallies(doc: dict[str, Any], tallies: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """Each target's counts beside its results: ``sign_ins`` (password submissions), ``rate_limited`` (429 or
    Retry-After answers waited out and retried) and ``rate_limit_wait_s``."""
    for name, t in doc["targets"].items():
        counts = tallies.get(name, {})
        t["sign_ins"] = int(counts.get(tally.SIGN_INS, 0))
        t["rate_limited"] = int(counts.get(tally.RATE_LIMITED, 0))
        t["rate_limit_wait_s"] = round(counts.get(tally.RATE_LIMIT_WAIT_MS, 0) / 1000, 1)
    return doc


def tally_line(t: Mapping[str, Any]) -> str:
    """The counts in words, one line (markdown and console); empty when the document has none."""
    if "sign_ins" not in t:
        return ""
    line = f"{t['sign_ins']} password sign-in(s)"
    if t.get("rate_limited"):
        line += f"; {t['rate_limited']} rate-limited answer(s) waited out ({t.get('rate_limit_wait_s', 0)} s)"
    return line


def write_summary(run: RunResults, folder: Path) -> dict[str, Any]:
    """summary.json and summary.md (one writer: the json's previous version feeds "changed since previous run")."""
    folder.mkdir(parents=True, exist_ok=True)
    previous = read_previous(folder)
    doc = build(run.results, strict=run.strict, baseline=run.baseline,
                attestations=load_attestations_for(run.attestations), previous=previous, run=what_was_run(run))
    add_tallies(doc, run.tallies)
    (folder / "summary.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / "summary.md").write_text(render_markdown(doc), encoding="utf-8")
    return doc


class SummaryWriter:
    """summary.json + summary.md into ``--smart-reports``."""

    destination = "reports"

    def write(self, run: RunResults, out: Path) -> None:
        write_summary(run, out)


def write_all(folder: Path, results: Results, *, strict: bool,
              attestations: Mapping[str, Path | None] | None = None,
              baseline: baseline_mod.Baseline | None = None) -> dict[str, Any]:
    """Every reports-folder writer (summary.json/.md, results.sarif) for in-memory results; returns the summary."""
    from smart_conformance.report.writers import write_reports

    typed = tuple(r if isinstance(r, CheckResult) else CheckResult.from_dict(r) for r in results)
    run = RunResults(results=typed, strict=strict, baseline=baseline, attestations=attestations or {})
    write_reports(run, reports=folder, allure=None)
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))
