"""The Allure results as the HTML report shows them to a payer: a copy of ``allure-results``, changed for reading.

``allure-results`` stay what pytest recorded (a warning is "failed" there, as pytest saw it; the checklist page is a
result of its own); the HTML report is built from a copy in which:

- a SHOULD finding (its message starts with ``[SHOULD]``, see allure_labels.CATEGORIES) is tagged
  ``SHOULD finding (warning)``, its title starts "⚠ SHOULD: " and, unless the run was strict, it is shown *passed*
  with its message: the check met every SHALL it cites, so the ring is not failed; the "SHOULD findings (warnings)"
  category keeps warnings apart from the "SHALL failures" one;
- report pages (the Safety Checklist) become global attachments beside the findings page, reachable from the
  overview, instead of results with no status (Allure's "Unknown");
- a check that never started (a shared fixture failed first) gets its titles in words from the suite's source;
- host, thread, framework, language and package labels, and fixture set-up entries that carry nothing, are left out
  (and, for Allure 3, whose tree is grouped by epic and feature, the suite labels that repeat them);
- for ``--single-file`` (one file to mail or archive), checks that passed or were not applicable show their evidence
  in brief in their description (each exchange one line, under the first check that used it; screenshots and files
  named; notes once), and no tags (the requirement ids stay in the links); every check with a finding or that could
  not check keeps all of its evidence in full. The multi-file report and ``allure-results`` keep everything.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from smart_conformance.report import titles
from smart_conformance.report.allure_labels import (
    CATEGORIES,
    SHARED_SUFFIX,
    STRICT_KEY,
    WARNING_TAG,
    WARNING_TITLE,
)

NOISE_LABELS = frozenset({"host", "thread", "framework", "language", "package"})
SUITE_LABELS = ("parentSuite", "suite", "subSuite")
SUITE_LABELS_SET = frozenset(SUITE_LABELS)
GROUP_BY = "epic,feature"  # Allure 3's tree: area, then group of checks (the suite labels say the same, for Allure 2)
PAGE_LABEL = "report_page"  # a result that is a page of the report (the checklist), not a check
PAGES_EPIC = "Report pages"  # Allure 2, which has no global attachments: where the pages are listed
_WARNING = re.compile(CATEGORIES[1]["messageRegex"])
_FINDING_STATUSES = ("failed", "broken")
MAX_URL = 120
MAX_LINES = 12  # a passed check's own exchanges listed in the single file; the rest counted


@dataclass
class Prepared:
    """What the copy holds, for the build and its tests."""

    folder: Path
    pages: list[str] = field(default_factory=list)  # names of the global attachments (findings, checklist)
    warnings: int = 0
    slimmed: int = 0  # checks whose evidence the single file shows in one-line form


def _label(result: dict[str, Any], name: str) -> str | None:
    return next((lb.get("value") for lb in result.get("labels") or [] if lb.get("name") == name), None)


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_env(results: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    file = results / "environment.properties"
    if file.is_file():
        for line in file.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                env[key.strip()] = value.strip()
    return env


def _place(source: Path, dest: Path) -> None:
    """A file of the results into the copy: a hard link where the file system allows, else a copy."""
    if dest.exists():
        return
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def is_warning(result: dict[str, Any]) -> bool:
    message = str((result.get("statusDetails") or {}).get("message") or "")
    return result.get("status") == "failed" and bool(_WARNING.fullmatch(message))


def fill_titles(result: dict[str, Any], suites: Path | None = None) -> bool:
    """Titles in words for a check nothing labelled while it ran (its fixture failed before it started)."""
    if _label(result, "epic"):
        return False
    name = str(result.get("name") or "")
    target = next((str(p.get("value", "")).strip("'\"") for p in result.get("parameters") or []
                   if p.get("name") == "target"), "")
    named = titles.from_source(str(result.get("fullName") or ""), titles.param_id_of(name), target, suites)
    if named is None:
        return False
    labels = [lb for lb in result.get("labels") or [] if lb.get("name") not in SUITE_LABELS]
    labels += [{"name": "epic", "value": named.area}, {"name": "parentSuite", "value": named.area},
               {"name": "feature", "value": named.group}, {"name": "suite", "value": named.group},
               {"name": "story", "value": named.check}]
    result["labels"] = labels
    result["name"] = named.title
    return True


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _exchange_line(exchange: dict[str, Any], origin: str = "") -> str:
    """``GET /fhir/metadata → 200 OK``: the URL without ``origin`` when it is there, cut when long."""
    request, response = exchange.get("request") or {}, exchange.get("response") or {}
    url = str(request.get("url", ""))
    if origin and _origin(url) == origin:
        url = url[len(origin):] or "/"
    if len(url) > MAX_URL:
        url = f"{url[:MAX_URL]}… (+{len(url) - MAX_URL} characters)"
    return f"{request.get('method', '')} {url} → {response.get('status', '')} {response.get('reason', '')}".rstrip()


def _exchange_key(exchange: dict[str, Any]) -> tuple[str, str, str]:
    request = exchange.get("request") or {}
    return (str(exchange.get("started_at", "")), str(request.get("method", "")), str(request.get("url", "")))


class _Slimmer:
    """The single file's form of a passed check's evidence: one text attachment in place of its exchanges (one line
    each, under the first check by start time that carries them; the others count them), its screenshots and shared
    files (named), and its notes (each paragraph once per report, under the first check that shows it)."""

    def __init__(self, results: Path, out: Path) -> None:
        self.results, self.out = results, out
        self.shown: set[tuple[str, ...]] = set()  # exchanges, files and notes some check shows already

    def slim(self, result: dict[str, Any]) -> bool:
        kept: list[dict[str, Any]] = []
        own: list[dict[str, Any]] = []
        named: list[str] = []
        notes: list[str] = []
        count = 0
        earlier = Counter[str]()  # what an earlier check shows already, by kind
        for attachment in result.get("attachments") or []:
            source = self.results / str(attachment.get("source", ""))
            name = str(attachment.get("name", ""))
            kind = str(attachment.get("type", ""))
            if name.startswith("HTTP exchanges") and source.suffix == ".json":
                exchanges = _load(source)
                if isinstance(exchanges, list):
                    for exchange in (e for e in exchanges if isinstance(e, dict)):
                        count += 1
                        if self._first(("exchange", *_exchange_key(exchange))):
                            own.append(exchange)
                        else:
                            earlier["exchange"] += 1
                    continue
            files: list[str] = []
            if kind.startswith("image/") or source.suffix == ".png":
                files = [name]
            elif kind == "text/plain" and source.is_file() and name.endswith(SHARED_SUFFIX):
                # allure_labels' references to shared files: their names suffice here
                text = source.read_text(encoding="utf-8", errors="replace")
                files = [line for line in text.splitlines()[2:] if line.strip() and not line.startswith(" ")]
            elif kind == "text/plain" and source.is_file():
                text = source.read_text(encoding="utf-8", errors="replace")
                for paragraph in (p.strip() for p in text.split("\n\n") if p.strip()):
                    if self._first(("note", paragraph)):
                        notes.append(paragraph)
                    else:
                        earlier["note"] += 1
                continue
            elif kind != "text/plain" and not (kind == "application/json" and source.suffix == ".json"):
                files = [name]  # a trace or other file: in full in the multi-file report
            else:
                kept.append(attachment)
                continue
            for file in files:
                if self._first(("file", file)):
                    named.append(f"file: {file}")
                else:
                    earlier["file"] += 1
        if not (count or named or notes or earlier):
            return False
        origins = Counter(_origin(str((e.get("request") or {}).get("url", ""))) for e in own)
        origin = origins.most_common(1)[0][0] if origins else ""
        lines = [_exchange_line(e, origin) for e in own[:MAX_LINES]]
        if len(own) > MAX_LINES:
            lines.append(f"… and {len(own) - MAX_LINES} more")
        parts = [f"on {origin}:" if origin else "", "\n".join(lines), "\n".join(named), *notes]
        if earlier:
            parts.append("+ " + ", ".join(f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in earlier.items())
                         + " shown under an earlier check")
        # In the description, as a code block (escaped by the report's Markdown): an attachment per check would cost
        # more in the one file than the text itself.
        text = "\n\n".join(p for p in parts if p)
        block = "\n".join(f"    {line}" if line else "" for line in text.splitlines())
        brief = f"**In brief: {count} HTTP exchange{'' if count == 1 else 's'}** (full: multi-file report)\n\n{block}"
        result["description"] = "\n\n".join(filter(None, (str(result.get("description") or ""), brief)))
        result["attachments"] = kept
        return True

    def _first(self, key: tuple[str, ...]) -> bool:
        """Whether no earlier check shows this (and it is now shown)."""
        if key in self.shown:
            return False
        self.shown.add(key)
        return True


def _attachment_sources(node: Any) -> Iterable[str]:
    """Every attachment file a result or container names, in steps too."""
    if isinstance(node, dict):
        for attachment in node.get("attachments") or []:
            if isinstance(attachment, dict) and attachment.get("source"):
                yield str(attachment["source"])
        for key in ("steps", "befores", "afters"):
            for child in node.get(key) or []:
                yield from _attachment_sources(child)


def _container_useful(container: dict[str, Any]) -> bool:
    fixtures = [*(container.get("befores") or []), *(container.get("afters") or [])]
    return any(f.get("status") not in (None, "passed") or any(_attachment_sources(f)) for f in fixtures)


def prepare(results: Path, out: Path, *, single_file: bool, allure_major: int = 3,
            suites: Path | None = None) -> Prepared:
    """Write the copy of ``results`` the HTML report is built from into ``out`` (see the module's docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    strict = _read_env(results).get(STRICT_KEY) == "true"
    prepared = Prepared(out)
    used: set[str] = set()
    pages: list[dict[str, Any]] = []
    loaded = [(f, _load(f)) for f in sorted(results.glob("*-result.json"))]
    checks = sorted(((f, r) for f, r in loaded if isinstance(r, dict)), key=lambda fr: fr[1].get("start") or 0)
    slimmer = _Slimmer(results, out)
    for file, result in checks:
        if _label(result, PAGE_LABEL):
            for attachment in result.get("attachments") or []:
                if attachment.get("type") == "text/html":
                    headline = str((result.get("statusDetails") or {}).get("message") or "")
                    pages.append({"name": " — ".join(filter(None, (str(result.get("name") or ""), headline))),
                                  "source": attachment["source"], "type": "text/html",
                                  "timestamp": result.get("stop") or int(time.time() * 1000)})
                    used.add(str(attachment["source"]))
            continue
        fill_titles(result, suites)
        result.pop("titlePath", None)  # folder and module names; the tree reads epic and feature
        dropped = NOISE_LABELS | (SUITE_LABELS_SET if allure_major >= 3 else frozenset())  # 3: tree by epic, feature
        if single_file:  # the requirement ids stay in the links, which the report's search reads too
            dropped |= {"tag"}
        result["labels"] = [lb for lb in result.get("labels") or [] if lb.get("name") not in dropped]
        if is_warning(result):
            prepared.warnings += 1
            result["labels"].append({"name": "tag", "value": WARNING_TAG})
            result["name"] = WARNING_TITLE + str(result.get("name") or "")
            if not strict:
                result["status"] = "passed"
        elif single_file and result.get("status") not in _FINDING_STATUSES and slimmer.slim(result):
            prepared.slimmed += 1
        used.update(_attachment_sources(result))
        (out / file.name).write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    for file in sorted(results.glob("*-container.json")):
        container = _load(file)
        if isinstance(container, dict) and _container_useful(container):
            used.update(_attachment_sources(container))
            _place(file, out / file.name)
    for file in sorted(results.glob("*-globals.json")):
        doc = _load(file)
        if isinstance(doc, dict):
            pages += [a for a in doc.get("attachments") or [] if isinstance(a, dict) and a.get("source")]
            used.update(str(a["source"]) for a in doc.get("attachments") or [] if isinstance(a, dict)
                        and a.get("source"))
    pages.sort(key=lambda a: (not str(a.get("name", "")).startswith("Findings"), str(a.get("name", ""))))
    prepared.pages = [str(a["name"]) for a in pages]
    if pages and allure_major >= 3:
        (out / f"{uuid.uuid4()}-globals.json").write_text(json.dumps({"attachments": pages, "errors": []},
                                                                     ensure_ascii=False), encoding="utf-8")
    elif pages:
        _pages_as_results(out, pages)
    for file in results.iterdir():
        name = file.name
        if file.is_file() and (name in used or not (name.endswith(("-result.json", "-container.json",
                                                                    "-globals.json")) or "-attachment" in name)):
            _place(file, out / name)
    return prepared


def _pages_as_results(out: Path, pages: list[dict[str, Any]]) -> None:
    """Allure 2 reads no global attachments: each page becomes a result of its own under "Report pages", skipped
    (a page, not a check: no pass or fail to count) with a message that says so."""
    for page in pages:
        key = re.sub(r"[^A-Za-z0-9]+", "-", str(page["name"]).split(" — ", 1)[0])[:80]  # without the counts
        result = {"uuid": str(uuid.uuid4()), "historyId": f"report-page-{key}", "testCaseId": f"report-page-{key}",
                  "name": page["name"], "fullName": f"report_pages.{key}", "status": "skipped", "stage": "finished",
                  "statusDetails": {"message": "a page of this report, not a check"},
                  "labels": [{"name": "epic", "value": PAGES_EPIC}, {"name": "parentSuite", "value": PAGES_EPIC}],
                  "attachments": [{"name": page["name"], "source": page["source"], "type": "text/html"}]}
        (out / f"{result['uuid']}-result.json").write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
