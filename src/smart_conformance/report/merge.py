"""One report folded from the report folders of CI shards (``--shard i/n``, see ``distribution.py``).

Shards split *targets*, never a target's checks: every check of a target runs in one job, against one sign-in per
worker, and its summary section is complete in that job's ``summary.json``. So the merged report is the union of the
shards' target sections, and the merged exit status is recomputed from them with the rule a single run applies
(``root_causes.exit_status``): a SHALL finding (or, strict, a SHOULD one) no baseline accepts, or a stale baseline
entry → 1, else anything that could not be checked → 3, else 0. A shard folder without ``summary.json`` (its job did
not finish) leaves its targets unchecked: the merged exit status is then at least 3, and the report says which folder
it was.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smart_conformance import __version__, root_causes
from smart_conformance.report import summary as summary_mod


class MergeError(Exception):
    """Shard folders that cannot be folded into one report: which folder, what is wrong, how to fix it."""


@dataclass
class Merged:
    """The folded report, and what the merge had to say about its inputs."""

    summary: dict[str, Any]
    exit_code: int
    missing: list[Path] = field(default_factory=list)  # shard folders with no summary.json


def _read_summary(folder: Path) -> dict[str, Any] | None:
    file = folder / "summary.json"
    if not file.is_file():
        return None
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MergeError(f"{file}: not a readable summary.json ({exc}); rerun that shard") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("targets"), dict):
        raise MergeError(f"{file}: not a smart-conformance summary (no 'targets'); pass the shard's reports folder")
    return doc


def merge_summaries(docs: Sequence[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """One summary document from the shards' documents (each paired with the folder it came from)."""
    targets: dict[str, Any] = {}
    owner: dict[str, Path] = {}
    strict_modes = {bool(doc.get("strict")) for _, doc in docs}
    if len(strict_modes) > 1:
        raise MergeError("the shards ran with different --strict settings ("
                         + ", ".join(f"{folder}: strict={bool(doc.get('strict'))}" for folder, doc in docs)
                         + "); run every shard with the same options")
    for folder, doc in docs:
        for name, section in doc["targets"].items():
            if name in owner:
                raise MergeError(f"target {name!r} is in both {owner[name]} and {folder}: shards split targets, so "
                                 "each target belongs to one shard; run every job with --shard i/n of the same n "
                                 "over the same target files, and merge each folder once")
            owner[name] = folder
            targets[name] = section
    strict = strict_modes.pop() if strict_modes else False
    out: dict[str, Any] = {"tool": "smart-payer-conformance", "version": __version__,
                           "generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "strict": strict,
                           "exit_code": exit_code({"targets": targets, "strict": strict}),
                           "targets": dict(sorted(targets.items())),
                           "merged_from": [str(folder) for folder, _ in docs]}
    baselines = [doc["baseline"] for _, doc in docs if isinstance(doc.get("baseline"), dict)]
    if baselines:
        unmet = [u for b in baselines for u in b.get("unmet") or []]
        out["baseline"] = {"file": baselines[0].get("file", ""), "entries": baselines[0].get("entries", 0),
                           "expected_failures": sum(int(b.get("expected_failures") or 0) for b in baselines),
                           "unmet": unmet}
    runs = [doc["run"] for _, doc in docs if isinstance(doc.get("run"), dict)]
    if runs:  # what each shard ran: its targets' files (or the embedded reference)
        out["run"] = {**runs[0], "targets": {n: t for r in runs for n, t in (r.get("targets") or {}).items()}}
    previous = sorted({doc["previous_run"] for _, doc in docs if doc.get("previous_run")})
    if previous:
        out["previous_run"] = previous[-1]
    return out


def exit_code(doc: dict[str, Any]) -> int:
    """The exit status a single run with these target sections would give (``root_causes.exit_status``'s rule): each
    target's findings are its root causes, each marked ``expected`` when the baseline accepts it (a summary written
    before root causes were kept: its failed and warning checks stand in), plus its checks that could not check."""
    remaining: list[str] = []
    broken = unmet = 0
    for section in doc["targets"].values():
        checks = section.get("findings") or []
        causes = section.get("root_causes")
        if causes is None:
            causes = [{"level": "SHALL" if f["outcome"] == "failed" else "SHOULD", "expected": f.get("expected")}
                      for f in checks if f["outcome"] in ("failed", "warning")]
        remaining += [str(c.get("level") or "SHALL") for c in causes if not c.get("expected")]
        broken += sum(1 for f in checks if f["outcome"] == "broken" and not f.get("expected"))
        unmet += len(section.get("baseline_unmet") or [])
    return root_causes.exit_status(remaining, broken=broken, strict=bool(doc.get("strict")), unmet_baseline=unmet)


def merge(folders: Sequence[Path], output: Path) -> Merged:
    """Fold the shards' report folders into ``output``: summary.json/.md, allure-results, junit.xml, results.sarif
    and the screenshots and traces under artifacts/. Raises :class:`MergeError` for inputs that cannot be merged."""
    folders = [Path(f) for f in folders]
    out_resolved = Path(output).resolve()
    for folder in folders:
        if not folder.is_dir():
            raise MergeError(f"{folder}: no such folder; pass each shard's reports folder (smart-conformance run "
                             "--reports DIR)")
        if folder.resolve() == out_resolved:
            raise MergeError(f"{folder}: the output folder is also an input; write the merged report elsewhere "
                             "(--output DIR)")
    docs: list[tuple[Path, dict[str, Any]]] = []
    missing: list[Path] = []
    for folder in folders:
        doc = _read_summary(folder)
        if doc is None:
            missing.append(folder)
        else:
            docs.append((folder, doc))
    doc = merge_summaries(docs)
    if missing:
        doc["missing_shards"] = [str(f) for f in missing]
    code = doc["exit_code"]
    if missing and code != summary_mod.EXIT_FAILED:
        code = summary_mod.EXIT_BROKEN  # the missing shards' targets were not checked
    doc["exit_code"] = code
    output.mkdir(parents=True, exist_ok=True)
    _merge_artifacts(folders, output / "artifacts")
    doc = _repoint(doc, output / "artifacts")
    (output / "summary.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    markdown = summary_mod.render_markdown(doc)
    if missing:
        markdown += ("\n## Shards that did not finish\n\n" + "".join(f"- `{f}`: no summary.json; its targets were "
                                                                     "not checked\n" for f in missing))
    (output / "summary.md").write_text(markdown, encoding="utf-8")
    _merge_allure(folders, output / "allure-results")
    _merge_junit(folders, output / "junit.xml")
    _merge_sarif(folders, output / "results.sarif")
    return Merged(summary=doc, exit_code=code, missing=missing)


def _repoint(doc: dict[str, Any], artifacts: Path) -> dict[str, Any]:
    """Findings name their screenshots and traces by the path the shard's job wrote them to (``…/artifacts/<target>/
    <worker>/…``), gone or elsewhere by the time the shards are merged: point them at the merged copy instead."""
    if not artifacts.is_dir():
        return doc
    names = sorted((p.name for p in artifacts.iterdir() if p.is_dir()), key=len, reverse=True)
    if not names:
        return doc
    pattern = re.compile(r"[^\s'\"()<>\[\]]*/artifacts/(" + "|".join(re.escape(n) for n in names) + ")/")
    root = artifacts.resolve().as_posix()

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(lambda m: f"{root}/{m.group(1)}/", value)
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return value

    return {**doc, "targets": fix(doc["targets"])}


def _merge_allure(folders: Sequence[Path], out: Path) -> None:
    """Result, container and attachment files keep their (uuid) names; environment.properties lists every target."""
    sources = [f / "allure-results" for f in folders if (f / "allure-results").is_dir()]
    if not sources:
        return
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env: dict[str, str] = {}
    targets: list[str] = []
    for source in sources:
        for file in sorted(source.iterdir()):
            if not file.is_file():
                continue
            if file.name == "environment.properties":
                for line in file.read_text(encoding="utf-8").splitlines():
                    key, sep, value = line.partition("=")
                    if not sep:
                        continue
                    if key == "targets":
                        targets += [t for t in value.split(",") if t and t not in targets]
                    else:
                        env.setdefault(key, value)
            elif not (out / file.name).exists():  # executor.json, categories.json: the same in every shard
                shutil.copy2(file, out / file.name)
    if env or targets:
        env["targets"] = ",".join(sorted(targets))
        env["shards"] = str(len(sources))
        (out / "environment.properties").write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())),
                                                    encoding="utf-8")


def _merge_junit(folders: Sequence[Path], out: Path) -> None:
    """One <testsuites> holding every shard's <testsuite>, with the totals summed."""
    suites: list[ET.Element] = []
    for folder in folders:
        file = folder / "junit.xml"
        if not file.is_file():
            continue
        try:
            root = ET.parse(file).getroot()
        except ET.ParseError as exc:
            raise MergeError(f"{file}: not valid XML ({exc}); rerun that shard") from None
        suites += [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    if not suites:
        return
    merged = ET.Element("testsuites", {"name": "smart-payer-conformance"})
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    time = 0.0
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, "0") or 0)
        time += float(suite.get("time", "0") or 0)
        merged.append(suite)
    for key, value in totals.items():
        merged.set(key, str(value))
    merged.set("time", f"{time:.3f}")
    ET.ElementTree(merged).write(out, encoding="utf-8", xml_declaration=True)


def _merge_sarif(folders: Sequence[Path], out: Path) -> None:
    """One run: the union of the rules, every result (re-indexed against the merged rules), every target."""
    runs: list[dict[str, Any]] = []
    for folder in folders:
        file = folder / "results.sarif"
        if not file.is_file():
            continue
        try:
            runs += json.loads(file.read_text(encoding="utf-8")).get("runs") or []
        except (OSError, ValueError) as exc:
            raise MergeError(f"{file}: not readable SARIF ({exc}); rerun that shard") from None
    if not runs:
        return
    rules: dict[str, Any] = {}
    for run in runs:
        for rule in run["tool"]["driver"].get("rules") or []:
            rules.setdefault(rule["id"], rule)
    ordered = [rules[i] for i in sorted(rules)]
    index = {rule["id"]: n for n, rule in enumerate(ordered)}
    results = [dict(r, ruleIndex=index[r["ruleId"]]) for run in runs for r in run.get("results") or []]
    results.sort(key=lambda r: (r.get("properties", {}).get("target", ""), r.get("properties", {}).get("nodeid", ""),
                                r["ruleId"]))
    first = runs[0]
    targets = sorted({t for run in runs for t in (run.get("properties") or {}).get("targets") or []})
    doc = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
           "runs": [{**first, "tool": {"driver": {**first["tool"]["driver"], "rules": ordered}}, "results": results,
                     "properties": {**(first.get("properties") or {}), "targets": targets}}]}
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")


def _merge_artifacts(folders: Sequence[Path], out: Path) -> None:
    """Screenshots and traces (artifacts/<target>/<worker>/...): each target's folder comes from its one shard."""
    for folder in folders:
        source = folder / "artifacts"
        if not source.is_dir():
            continue
        for target_dir in sorted(p for p in source.iterdir() if p.is_dir()):
            destination = out / target_dir.name
            shutil.rmtree(destination, ignore_errors=True)
            shutil.copytree(target_dir, destination)
