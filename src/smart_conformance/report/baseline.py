"""Baselines: known failures a team has accepted for now, so the pipeline gates on *new* failures only.

A YAML or JSON list of ``{target, check, reason}`` (``check`` = the test function name, as in summary.md). A failure
(or SHOULD warning) of a baselined check is marked ``expected``: it stays failed in Allure and is listed in the
summary, but does not fail the exit code. A baselined check that ran and did *not* fail is listed as "expected failure
did not happen": the baseline is stale, and that does fail the exit code (remove the entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smart_conformance.config import ConfigError, load_yaml

FAILING = frozenset({"failed", "warning"})


class BaselineError(ConfigError):
    """A baseline file that cannot be used: file, key, what is wrong, how to fix it."""


@dataclass(frozen=True)
class Entry:
    target: str
    check: str
    reason: str


@dataclass(frozen=True)
class Baseline:
    file: Path
    entries: tuple[Entry, ...]

    def find(self, target: str, check: str) -> Entry | None:
        return next((e for e in self.entries if e.target == target and e.check == check), None)


def load(file: Path | str) -> Baseline:
    """Read and validate a baseline file. Raises :class:`BaselineError` only."""
    file = Path(file)
    # YAML is a superset of JSON: one parser for both.
    raw = load_yaml(file, what="baseline file", missing_fix="pass an existing file to --baseline", error=BaselineError,
                    syntax="YAML/JSON")
    if isinstance(raw, dict) and set(raw) == {"baseline"}:
        raw = raw["baseline"]
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise BaselineError(file, "", "the file does not hold a list",
                            "write a list of entries: - {target: NAME, check: test_name, reason: why}")
    entries: list[Entry] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(raw):
        key = f"[{i}]"
        if not isinstance(item, dict):
            raise BaselineError(file, key, "an entry is not a mapping", "write {target: NAME, check: test_name, reason: why}")
        extra = sorted(set(item) - {"target", "check", "reason"})
        if extra:
            raise BaselineError(file, f"{key}.{extra[0]}", f"unknown key '{extra[0]}'", "allowed keys: target, check, reason")
        for name in ("target", "check", "reason"):
            value = item.get(name)
            if not isinstance(value, str) or not value.strip():
                raise BaselineError(file, f"{key}.{name}", "required text is missing",
                                    f"give '{name}'" + (" (why this failure is accepted, e.g. a ticket)"
                                                        if name == "reason" else ""))
        check = item["check"].split("[", 1)[0].split("::")[-1]  # accept a node id or test_name[param] too
        if (item["target"], check) in seen:
            raise BaselineError(file, f"{key}.check", f"{item['target']}/{check} is listed twice", "keep one entry")
        seen.add((item["target"], check))
        entries.append(Entry(target=item["target"], check=check, reason=item["reason"].strip()))
    return Baseline(file=file, entries=tuple(entries))


def apply(results: list[dict[str, Any]], baseline: Baseline | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Mark baselined failures ``expected`` (copies; outcome unchanged). Returns (results, unmet entries): an unmet
    entry is one whose check ran for its target and did not fail (passed, or not applicable)."""
    if baseline is None or not baseline.entries:
        return [dict(r) for r in results], []
    marked: list[dict[str, Any]] = []
    for r in results:
        r = dict(r)
        entry = baseline.find(r["target"], r["check"])
        if entry and r["outcome"] in FAILING:
            r["expected"] = True
            r["baseline_reason"] = entry.reason
        marked.append(r)
    unmet = []
    for entry in baseline.entries:
        rows = [r for r in marked if r["target"] == entry.target and r["check"] == entry.check]
        if rows and not any(r.get("expected") for r in rows) and all(r["outcome"] in ("passed", "skipped") for r in rows):
            unmet.append({"target": entry.target, "check": entry.check, "reason": entry.reason,
                          "outcome": ",".join(sorted({r["outcome"] for r in rows}))})
    return marked, unmet
