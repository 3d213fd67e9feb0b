"""Allure metadata derived from what the suites already declare: area, module, check, cited requirements.

Only called on the process that runs the test (never the xdist controller, where allure calls break).

Titles are words (``report/titles.py``): the area's title as epic and parent suite, the module's docstring as
feature and suite, the check's name in words as story, and the check's first sentence with its case and target as the
test's title.

Evidence shared by several checks (the shared launch's screenshots and traces) is attached in full once per process,
to the first check that used it; the other checks get a text attachment naming each file and the check that carries
it. A check that did not pass (failed, warning, could not check) gets every file in full: its finding shows them.
"""

from __future__ import annotations

import inspect
import json
import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import allure
import pytest

from smart_conformance import __version__, redact, requirements, root_causes
from smart_conformance.checks import Finding
from smart_conformance.http import Evidence
from smart_conformance.report import titles
from smart_conformance.results import RunResults

SEVERITY = {
    "SHALL": allure.severity_level.CRITICAL,
    "SHALL NOT": allure.severity_level.CRITICAL,
    "SHOULD": allure.severity_level.NORMAL,
    "SHOULD NOT": allure.severity_level.NORMAL,
    "MAY": allure.severity_level.MINOR,
}

OTHER_AREA_TITLES = titles.OTHER_AREA_TITLES  # kept importable from here

# Files this process attached in full, with the title of the check whose result carries them.
_ATTACHED: dict[Path, str] = {}
_current = {"title": ""}  # the check label_test named last: the one whose call is running
SHARED_SUFFIX = " shared file(s), attached once"  # the name's end of a text attachment that references shared files


def item_titles(item: pytest.Item, target: str, area: str, check: str) -> titles.CheckTitles:
    module = getattr(item, "module", None)
    stem = Path(str(getattr(item, "path", ""))).stem or area
    obj = getattr(item, "obj", None)
    callspec = getattr(item, "callspec", None)
    return titles.for_check(area, getattr(module, "__doc__", None), stem, check, getattr(obj, "__doc__", None),
                            str(getattr(callspec, "id", "") or ""), target)


def label_test(item: pytest.Item, target: str, area: str, check: str, ids: tuple[str, ...]) -> None:
    named = item_titles(item, target, area, check)
    reqs = requirements.lookup(ids)
    top = requirements.strongest(reqs)
    allure.dynamic.epic(named.area)
    allure.dynamic.parent_suite(named.area)
    allure.dynamic.feature(named.group)
    allure.dynamic.suite(named.group)
    allure.dynamic.story(named.check)
    allure.dynamic.title(named.title)
    _current["title"] = named.title
    doc = inspect.cleandoc(getattr(getattr(item, "obj", None), "__doc__", None) or "")
    if doc:  # Allure's fullName (area.module#check) names the code above it
        allure.dynamic.description(doc)
    allure.dynamic.parameter("target", target)
    if top:
        allure.dynamic.severity(SEVERITY.get(top.level, allure.severity_level.NORMAL))
    for req in reqs:
        allure.dynamic.link(req.url, link_type="req", name=f"{req.id} ({req.level})")
        allure.dynamic.tag(req.id)


def attach_evidence(evidence: Evidence, failure: BaseException | None = None) -> None:
    """The test's exchanges, files and notes. ``failure``: what the check raised; anything but "not applicable"
    means a finding or a could-not-check, whose reader needs every file in full."""
    full = failure is not None and not isinstance(failure, pytest.skip.Exception)
    if evidence.exchanges:
        allure.attach(json.dumps([e.as_dict() for e in evidence.exchanges], indent=2, ensure_ascii=False),
                      name=f"HTTP exchanges ({len(evidence.exchanges)})", attachment_type=allure.attachment_type.JSON)
    shared: dict[str, list[str]] = {}
    for name, path in evidence.files:
        if not path.is_file():
            continue
        key = path.resolve()
        carrier = _ATTACHED.get(key)
        if full or carrier is None or carrier == _current["title"]:
            kind = allure.attachment_type.PNG if path.suffix == ".png" else None
            allure.attach.file(str(path), name=redact.text(name), attachment_type=kind, extension=path.suffix[1:])
            _ATTACHED.setdefault(key, _current["title"])
            continue
        group = name.split(":", 1)[0] if ":" in name else "shared files"
        shared.setdefault(group, []).append(f"{name}\n    attached to: {carrier}\n    file: {key}")
    for group, lines in shared.items():
        text = (f"{len(lines)} file(s) this check used, attached in full once, to the first check that used them "
                "(search the report for its title):\n\n" + "\n".join(lines))
        allure.attach(redact.text(text), name=redact.text(f"{group}: {len(lines)}{SHARED_SUFFIX}"),
                      attachment_type=allure.attachment_type.TEXT)
    if evidence.notes:
        allure.attach(redact.text("\n".join(evidence.notes)), name="notes", attachment_type=allure.attachment_type.TEXT)


def attach_findings(findings: Sequence[Finding]) -> None:
    """A grouped failure's items, one paragraph each with its requirement ids, level and evidence (the failure
    message lists them too; this attachment keeps them readable beside the HTTP exchanges)."""
    parts = []
    for n, f in enumerate(findings, 1):
        lines = [f"{n}. {', '.join(f.requirements) or 'uncited'} ({f.level})", f"   Expected: {f.expected}",
                 f"   Actual:   {f.actual}"]
        lines += [f"   Detail:   {f.detail}"] if f.detail else []
        lines += [f"   Evidence: {f.evidence}"] if f.evidence else []
        parts.append("\n".join(lines))
    allure.attach(redact.text("\n\n".join(parts)), name=f"failed expectations ({len(findings)})",
                  attachment_type=allure.attachment_type.TEXT)


WARNING_TAG = "SHOULD finding (warning)"  # the HTML report's tag on a warning, which it shows as passed
WARNING_TITLE = "⚠ SHOULD: "  # and the start of its title there, so the tree sets it apart
STRICT_KEY = "should.findings.fail.run"  # environment.properties: whether the run counted warnings as failures

CATEGORIES = [
    # Allure 2 can sort by status and message text only, so a warning's message starts with its level in brackets
    # ("[SHOULD] ", "[SHOULD NOT] "), after the exception type Allure puts first ("...ConformanceFailure: "); a SHALL
    # failure's does not. The harness itself never reads the level back from text: it is CheckResult.level.
    # allure-results keep a warning "failed" (pytest's outcome); the HTML report shows it "passed" with its message
    # (report/presentation.py), hence both statuses for the warnings. Allure 3 reads HTML_CATEGORIES instead.
    {"name": "SHALL failures (non-conformant)", "matchedStatuses": ["failed"],
     "messageRegex": r"(?s)^(?!(\S+: )?\[(SHOULD|SHOULD NOT|MAY)\]).*"},
    {"name": "SHOULD findings (warnings)", "matchedStatuses": ["failed", "passed"],
     "messageRegex": r"(?s)^(\S+: )?\[(SHOULD|SHOULD NOT|MAY)\].*"},
    {"name": "Could not check (harness or network)", "matchedStatuses": ["broken"]},
    {"name": "Not applicable", "matchedStatuses": ["skipped"]},
]

# The same categories in Allure 3's configuration (allurerc ``categories``), which can match labels: a warning is
# found by the tag the HTML report's presentation gives it, whatever its status.
HTML_CATEGORIES = [
    {"id": "should", "name": CATEGORIES[1]["name"], "matchers": {"labels": {"tag": f"^{re.escape(WARNING_TAG)}$"}},
     "groupByMessage": False, "expand": True},
    {"id": "shall", "name": CATEGORIES[0]["name"], "matchers": {"statuses": ["failed"]}, "groupByMessage": False,
     "expand": True},
    {"id": "broken", "name": CATEGORIES[2]["name"], "matchers": {"statuses": ["broken"]}, "groupByMessage": False},
    {"id": "skipped", "name": CATEGORIES[3]["name"], "matchers": {"statuses": ["skipped"]}, "groupByMessage": False},
]


def _escape(text: str) -> str:
    """A literal in a regular expression that Java (Allure 2) and JavaScript (Allure 3) read alike."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", text)


def root_cause_categories(run: RunResults) -> list[dict[str, Any]]:
    """One category per root cause of the run, most severe first: it matches the ``Root cause:`` line every failure
    message carries (``checks.ConformanceFailure``), so the checks that saw one cause are one entry of Allure's
    Categories tab. A check that saw several causes is filed under the first (Allure gives a result one category)."""
    causes: dict[str, root_causes.RootCause] = {}
    counts: dict[str, int] = {}
    for found in run.root_causes().values():
        for cause in found:
            causes.setdefault(cause.key, cause)
            counts[cause.key] = counts.get(cause.key, 0) + len(cause.seen)
    ordered = sorted(causes.values(), key=lambda c: (requirements.LEVEL_RANK.get(c.level, 9), -counts[c.key], c.key))
    out = []
    for cause in ordered:
        key = redact.text(cause.key)
        out.append({"name": f"{cause.level} · {key}"[:300],
                    "matchedStatuses": ["failed", "passed"] if cause.warning else ["failed"],
                    "messageRegex": rf"(?s).*\n\s*{root_causes.LINE_PREFIX}{_escape(key)}(\n.*)?"})
    return out


def html_root_cause_categories(categories: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The root-cause categories of a categories.json in Allure 3's form (its regular expressions are JavaScript's
    and search the message: no inline flag, no anchoring to the whole text)."""
    out = []
    mine = (c for c in categories if root_causes.LINE_PREFIX in str(c.get("messageRegex", "")))
    for n, category in enumerate(mine):
        pattern = str(category["messageRegex"]).removeprefix("(?s).*").removesuffix("(\\n.*)?") + "(\\n|$)"
        out.append({"id": f"root-cause-{n}", "name": category["name"],
                    "matchers": {"statuses": category.get("matchedStatuses", ["failed"]), "message": pattern},
                    "groupByMessage": False, "expand": False})
    return out


def write_run_files(alluredir: Path, run: RunResults) -> None:
    """environment.properties, executor.json and categories.json: once per run, from the controller."""
    alluredir.mkdir(parents=True, exist_ok=True)
    env = {
        "harness.version": __version__,
        "python": platform.python_version(),
        "targets": ",".join(run.targets),
        "embedded.reference": str(run.embedded).lower(),
        "reference.faults": ",".join(run.faults) or "none",
        STRICT_KEY: str(run.strict).lower(),
    }
    for name, url in run.targets.items():
        if url:
            env[f"target.{name}.fhir_base_url"] = redact.url(url)
    (alluredir / "environment.properties").write_text(
        "".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
    executor = {
        "name": os.environ.get("CI_NAME", "smart-conformance"),
        "type": "ci" if os.environ.get("CI") else "local",
        "buildName": os.environ.get("BUILD_NAME", f"smart-payer-conformance {__version__}"),
        "buildUrl": os.environ.get("BUILD_URL", ""),
        "reportName": "SMART payer conformance",
    }
    (alluredir / "executor.json").write_text(json.dumps(executor, indent=2), encoding="utf-8")
    categories = root_cause_categories(run) + CATEGORIES
    (alluredir / "categories.json").write_text(json.dumps(categories, indent=2, ensure_ascii=False), encoding="utf-8")


class AllureRunFilesWriter:
    """Allure's environment, executor and categories files, and the findings page, into ``--alluredir`` (the
    per-test results are allure-pytest's own)."""

    destination = "allure"

    def write(self, run: RunResults, out: Path) -> None:
        from smart_conformance.report import findings_page

        write_run_files(out, run)
        findings_page.write_allure(out, run)
