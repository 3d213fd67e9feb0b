"""Baselines: known failures a team has accepted for now, so the pipeline gates on *new* failures only.

A YAML or JSON list of entries, each of one of two kinds:

- by check: ``{target, check, reason}`` (``check`` = the test function name, as in summary.md): every finding of that
  check is accepted;
- by finding (root cause, see ``root_causes.py``): ``{target, requirement, cause, reason}`` (``requirement``: an id or
  a list of ids, as summary.md lists the finding; ``cause``: its cause as summary.md/json show it, or the ``Actual``
  text it came from, normalised the same way): that finding is accepted, whichever checks saw it.

An accepted finding stays in every report, marked ``expected`` with the reason, but does not count for the exit code;
a check all of whose findings are accepted is marked ``expected`` too. An entry that matched nothing for a target that
ran (a check that ran and did *not* fail, a finding no check saw) is listed as "expected failure did not happen": the
baseline is stale, and that does fail the exit code (remove the entry).

A known-failures list is input to the exit status (``results.RunResults.exit_code``), not a report format: it lives
beside ``results.py``, which must not depend on the report writers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smart_conformance import root_causes
from smart_conformance.config import ConfigError, load_yaml

FAILING = frozenset({"failed", "warning"})
_FIX = ("write {target: NAME, check: test_name, reason: why}, or for one finding "
        "{target: NAME, requirement: ID, cause: TEXT, reason: why}")


class BaselineError(ConfigError):
    """A baseline file that cannot be used: file, key, what is wrong, how to fix it."""


@dataclass(frozen=True)
class Entry:
    target: str
    check: str  # "" for an entry by finding
    reason: str
    requirements: tuple[str, ...] = ()  # an entry by finding: its requirement ids and cause
    cause: str = ""

    @property
    def by_finding(self) -> bool:
        return bool(self.cause)

    def accepts(self, target: str, requirement_ids: Sequence[str], cause: str) -> bool:
        """Whether this entry names the finding (target, requirement ids, cause)."""
        return (self.by_finding and self.target == target and set(self.requirements) == set(requirement_ids)
                and root_causes.normalise(self.cause) in (cause, root_causes.normalise(cause)))

    def describe(self) -> str:
        return self.check or root_causes.line(self.requirements, "", self.cause).replace(" ()", "")


@dataclass(frozen=True)
class Baseline:
    file: Path
    entries: tuple[Entry, ...]

    def find(self, target: str, check: str) -> Entry | None:
        return next((e for e in self.entries if not e.by_finding and e.target == target and e.check == check), None)

    def find_finding(self, target: str, requirement_ids: Sequence[str], cause: str) -> Entry | None:
        return next((e for e in self.entries if e.accepts(target, requirement_ids, cause)), None)


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
        raise BaselineError(file, "", "the file does not hold a list", "write a list of entries, each: " + _FIX)
    entries: list[Entry] = []
    seen: set[tuple[Any, ...]] = set()
    for i, item in enumerate(raw):
        key = f"[{i}]"
        if not isinstance(item, dict):
            raise BaselineError(file, key, "an entry is not a mapping", _FIX)
        by_finding = "check" not in item and ("requirement" in item or "cause" in item)
        allowed = {"target", "requirement", "cause", "reason"} if by_finding else {"target", "check", "reason"}
        extra = sorted(set(item) - allowed)
        if extra:
            raise BaselineError(file, f"{key}.{extra[0]}", f"unknown key '{extra[0]}'",
                                f"allowed keys: {', '.join(sorted(allowed))} ({_FIX})")
        for name in ("target", *(("requirement", "cause") if by_finding else ("check",)), "reason"):
            value = item.get(name)
            if name == "requirement" and isinstance(value, list) and value and all(
                    isinstance(v, str) and v.strip() for v in value):
                continue
            if not isinstance(value, str) or not value.strip():
                raise BaselineError(file, f"{key}.{name}", "required text is missing",
                                    f"give '{name}'" + {"reason": " (why this failure is accepted, e.g. a ticket)",
                                                        "requirement": " (the finding's requirement id, or a list)",
                                                        "cause": " (the finding's cause, as summary.md shows it)"}
                                    .get(name, ""))
        if by_finding:
            reqs = item["requirement"]
            ids = tuple(sorted({reqs.strip()} if isinstance(reqs, str) else {str(r).strip() for r in reqs}))
            ident: tuple[Any, ...] = (item["target"], ids, root_causes.normalise(item["cause"]))
            entry = Entry(target=item["target"], check="", reason=item["reason"].strip(), requirements=ids,
                          cause=item["cause"].strip())
        else:
            check = item["check"].split("[", 1)[0].split("::")[-1]  # accept a node id or test_name[param] too
            ident = (item["target"], check)
            entry = Entry(target=item["target"], check=check, reason=item["reason"].strip())
        if ident in seen:
            raise BaselineError(file, f"{key}.{'cause' if by_finding else 'check'}",
                                f"{item['target']}/{entry.describe()} is listed twice", "keep one entry")
        seen.add(ident)
        entries.append(entry)
    return Baseline(file=file, entries=tuple(entries))


def apply(results: Sequence[Mapping[str, Any]], baseline: Baseline | None) -> tuple[list[dict[str, Any]],
                                                                                  list[dict[str, Any]]]:
    """Mark what the baseline accepts (copies; outcome unchanged): each finding an entry by finding names gets
    ``baseline_reason``; a failed or warning check is ``expected`` when its own entry names it or every one of its
    findings is accepted. Returns (results, unmet entries): an unmet entry by check is one whose check ran for its
    target and did not fail (passed, or not applicable); one by finding, one that no check of its target (which
    ran) saw."""
    if baseline is None or not baseline.entries:
        return [dict(r) for r in results], []
    marked: list[dict[str, Any]] = []
    used: set[Entry] = set()
    for r in results:
        r = dict(r)
        entry = baseline.find(r["target"], r["check"])
        if r["outcome"] in FAILING:
            found = root_causes.items(r)
            accepted = []
            for item in found:
                by_finding = baseline.find_finding(r["target"], tuple(item.get("requirements") or ()),
                                                   root_causes.cause_of(item))
                if by_finding is not None:
                    item["baseline_reason"] = by_finding.reason
                    used.add(by_finding)
                    accepted.append(by_finding)
            if r.get("findings"):
                r["findings"] = found
            if entry is None and found and len(accepted) == len(found):
                entry = accepted[0]
            if entry is not None:
                r["expected"] = True
                r["baseline_reason"] = entry.reason
        marked.append(r)
    ran = {r["target"] for r in marked}
    unmet = []
    for entry in baseline.entries:
        if entry.by_finding:
            if entry.target in ran and entry not in used:
                unmet.append({"target": entry.target, "check": entry.describe(), "reason": entry.reason,
                              "outcome": "not seen", "requirements": list(entry.requirements), "cause": entry.cause})
            continue
        rows = [r for r in marked if r["target"] == entry.target and r["check"] == entry.check]
        if rows and not any(r.get("expected") for r in rows) and all(r["outcome"] in ("passed", "skipped") for r in rows):
            unmet.append({"target": entry.target, "check": entry.check, "reason": entry.reason,
                          "outcome": ",".join(sorted({r["outcome"] for r in rows}))})
    return marked, unmet
