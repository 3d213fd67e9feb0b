"""Root causes: findings with the same requirement(s), level and observed cause are one thing to fix.

A server that answers every bad token request with ``403 invalid_code`` breaks one rule, however many checks saw it.
Every report (summary.md/json, SARIF, the console, Allure's categories and findings page), the baseline and the exit
status count *root causes*, each with the checks that saw it, built here and nowhere else.

The observed cause of a finding is the short key its check set (``checks.Finding.cause``) when the check knows it,
else the finding's ``actual`` text normalised (:func:`normalise`): values that change from run to run or probe to probe
(ports, ids, opaque tokens, timestamps, query values, counts) become placeholders, while what tells behaviours apart
(HTTP status codes, error codes, header names, protocol versions) is kept.

Works on results in their JSON form (``results.rows``), so it serves a live run and a summary read back alike; it
imports nothing from ``results`` or ``report/`` (both depend on it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from smart_conformance import requirements

# --- the observed cause of one finding --------------------------------------------------------------------------------

_URL = re.compile(r"\b(?:https?|wss?)://(?:[^\s'\"<>()\[\]{}`,;]|<port>|<id>|<v>)+")
_HOST_PORT = re.compile(r"\b((?:\d{1,3}\.){3}\d{1,3}|localhost|\[[0-9a-fA-F:]+\]):\d{2,5}\b")
_TMP_PATH = re.compile(r"(?:/tmp|/var/folders|/private/var/folders)/[^\s'\"()]*")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_JWT = re.compile(r"\beyJ[\w-]*\.[\w-]*(?:\.[\w-]*)?")
_ISO_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}|\s?UTC)?)?\b")
_HTTP_DATE = re.compile(r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT\b")
# opaque values: long runs of letters and digits (tokens, session and job ids, state values), or hex with a digit
_OPAQUE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{20,}(?![\w-])")
_HEX = re.compile(r"\b[a-z]{0,4}(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b")
_DURATION = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds?|minutes?|min|hours?|h|days?)\b")
# pa-ann-eob-1, member_42, P2P-2001 (not a charset, digest or RFC name)
_NUMBERED_ID = re.compile(r"\b(?!(?i:utf|iso|sha|rfc|tls|ssl|http|x509)[-_])(?:[A-Za-z][A-Za-z0-9]*[-_])+\d+\b")
# a standalone integer; one of 100-599 is kept, as it is most likely an HTTP status (the thing that tells causes apart)
_INTEGER = re.compile(r"(?<![\w.<*§-])(?<!RFC )\d+(?![\w.])")
_SPACE = re.compile(r"\s+")
_MASK = re.compile(r"\*{3,}")


def _url(match: re.Match[str]) -> str:
    try:
        parts = urlsplit(match.group(0).replace(":<port>", ":1"))
        host = parts.hostname or ""
    except ValueError:
        return match.group(0)
    netloc = host + (":<port>" if parts.port else "")
    path = "/".join(_segment(s) for s in parts.path.split("/"))
    query = "&".join(f"{p.split('=', 1)[0]}=<v>" if "=" in p else p for p in parts.query.split("&")) if parts.query \
        else ""
    return urlunsplit((parts.scheme, netloc, path, query, "<v>" if parts.fragment else ""))


def _segment(segment: str) -> str:
    """A path segment that is an id (a digit in it, or long and opaque) is a placeholder; words stay."""
    if not segment or segment.startswith(("$", ".")):
        return segment
    digits = any(c.isdigit() for c in segment)
    opaque = len(segment) >= 16 and not _WORDS.fullmatch(segment)  # job ids, session keys (a name is words)
    if segment.isdigit() or opaque or (digits and (_NUMBERED_ID.fullmatch(segment) or _HEX.fullmatch(segment))):
        return "<id>"
    return segment


_WORDS = re.compile(r"[A-Za-z]+|[a-z]+(?:[-_.][a-z]+)*")


def _integer(match: re.Match[str]) -> str:
    text = match.group(0)
    return text if len(text) == 3 and 100 <= int(text) <= 599 else "<n>"


def normalise(actual: str) -> str:
    """The observed cause in ``actual``: incidental values replaced by placeholders, so that one behaviour seen by
    several probes is one cause, while different statuses and error codes stay different causes. Idempotent."""
    text = _MASK.sub("***", actual)
    urls: list[str] = []  # normalised apart, and kept out of the rules for free text below

    def keep(match: re.Match[str]) -> str:
        urls.append(_url(match))
        return "\x00" + "".join(chr(ord("a") + int(d)) for d in str(len(urls) - 1)) + "\x00"  # letters: no rule

    text = _URL.sub(keep, text)
    text = _TMP_PATH.sub("<tmp>", text)
    text = _HOST_PORT.sub(lambda m: f"{m.group(1)}:<port>", text)
    text = _HTTP_DATE.sub("<time>", text)
    text = _ISO_TIME.sub("<time>", text)
    text = _UUID.sub("<id>", text)
    text = _JWT.sub("<jwt>", text)
    text = _OPAQUE.sub("<id>", text)
    text = _HEX.sub("<id>", text)
    text = _DURATION.sub("<duration>", text)
    text = _NUMBERED_ID.sub("<id>", text)
    text = _INTEGER.sub(_integer, text)
    text = re.sub("\x00([a-j]+)\x00", lambda m: urls[int("".join(str(ord(c) - ord("a")) for c in m.group(1)))], text)
    return _SPACE.sub(" ", text).strip()


def cause_of(item: Mapping[str, Any] | Any) -> str:
    """The cause of one finding (its JSON form or a ``checks.Finding``): the check's own key, else its normalised
    ``actual``."""
    get = item.get if isinstance(item, Mapping) else lambda k, d=None: getattr(item, k, d)
    explicit = str(get("cause", "") or "").strip()
    return explicit or normalise(str(get("actual", "") or ""))


def line(requirement_ids: Sequence[str], level: str, cause: str) -> str:
    """The root-cause line as a failure message carries it (after ``Root cause: ``) and Allure's categories match."""
    return f"{', '.join(requirement_ids) or 'uncited'} ({level}): {cause}"


LINE_PREFIX = "Root cause: "


# --- grouping -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One check that saw a root cause."""

    nodeid: str
    check: str
    outcome: str
    doc: str = ""
    expected: bool = False  # the check's own baseline entry covers it


@dataclass
class RootCause:
    """One thing to fix for one target: a requirement broken the same way, with every check that saw it."""

    target: str
    requirements: tuple[str, ...]
    level: str
    cause: str
    expected: str  # what the first check that saw it expected
    actual: str  # and what it saw, as written
    detail: str = ""
    evidence: str = ""  # the first exchange's one-line summary
    curl: str = ""
    seen: list[Seen] = field(default_factory=list)
    expectations: list[str] = field(default_factory=list)  # every distinct expectation, in the order seen
    evidences: list[str] = field(default_factory=list)
    baseline_reason: str = ""  # set when every sighting is accepted by a baseline entry

    @property
    def key(self) -> str:
        return line(self.requirements, self.level, self.cause)

    @property
    def warning(self) -> bool:
        return self.level in requirements.WARNING_LEVELS

    @property
    def baselined(self) -> bool:
        return bool(self.baseline_reason)

    @property
    def nodeids(self) -> list[str]:
        return [s.nodeid for s in self.seen]

    def sort_key(self) -> tuple[Any, ...]:
        """Most severe first: SHALL before SHOULD before MAY, then by how many checks saw it."""
        return (requirements.LEVEL_RANK.get(self.level, 9), -len(self.seen), self.requirements, self.cause)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key, "requirements": list(self.requirements), "level": self.level, "cause": self.cause,
            "expected_text": self.expected, "actual": self.actual, "checks": self.nodeids,
            "check_names": [s.check for s in self.seen], "evidence": self.evidence, "curl": self.curl,
        }
        if self.detail:
            out["detail"] = self.detail
        if len(self.expectations) > 1:
            out["expectations"] = list(self.expectations)
        if self.baseline_reason:
            out["expected"] = True  # as a check row's flag: baselined, reported but not gating
            out["baseline_reason"] = self.baseline_reason
        return out


FINDING_OUTCOMES = ("failed", "warning")


def items(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The findings of one failed or warning result row; a row written without its items (older results) stands in
    with one built from its message's Expected/Actual lines."""
    found = [dict(i) for i in row.get("findings") or ()]
    if found:
        return found
    lines = [ln.strip() for ln in str(row.get("message") or "").splitlines()]
    level = str(row.get("level") or ("SHOULD" if row.get("outcome") == "warning" else "SHALL"))
    return [{"requirements": list(row.get("violated") or row.get("requirements") or ()), "level": level,
             "expected": next((ln[len("Expected:"):].strip() for ln in lines if ln.startswith("Expected:")), ""),
             "actual": next((ln[len("Actual:"):].strip() for ln in lines if ln.startswith("Actual:")),
                            next((ln for ln in lines if ln), "")),
             "detail": "", "evidence": "", "curl": ""}]


def group(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[RootCause]]:
    """Per target, its root causes, most severe first. ``rows``: results in their JSON form, already marked by
    ``baseline.apply`` (a row's ``expected``, an item's ``baseline_reason``) when a baseline is in use."""
    by_target: dict[str, dict[tuple[Any, ...], RootCause]] = {}
    accepted: dict[tuple[str, tuple[Any, ...]], list[str]] = {}
    for row in sorted(rows, key=lambda r: (str(r.get("target", "")), str(r.get("nodeid", "")))):
        target = str(row.get("target", ""))
        causes = by_target.setdefault(target, {})
        if row.get("outcome") not in FINDING_OUTCOMES:
            continue
        for item in items(row):
            level = str(item.get("level") or "SHALL")
            reqs = tuple(item.get("requirements") or ())
            cause = cause_of(item)
            key = (reqs, level, cause)
            found = causes.get(key)
            if found is None:
                found = causes[key] = RootCause(
                    target=target, requirements=reqs, level=level, cause=cause,
                    expected=str(item.get("expected") or ""), actual=str(item.get("actual") or ""),
                    detail=str(item.get("detail") or ""), evidence=str(item.get("evidence") or ""),
                    curl=str(item.get("curl") or ""))
            if str(row.get("nodeid", "")) not in found.nodeids:
                found.seen.append(Seen(nodeid=str(row.get("nodeid", "")), check=str(row.get("check", "")),
                                       outcome=str(row["outcome"]), doc=str(row.get("doc") or ""),
                                       expected=bool(row.get("expected"))))
            expectation = str(item.get("expected") or "")
            if expectation and expectation not in found.expectations:
                found.expectations.append(expectation)
            evidence = str(item.get("evidence") or "")
            if evidence and evidence not in found.evidences:
                found.evidences.append(evidence)
            reason = str(item.get("baseline_reason") or (row.get("baseline_reason") if row.get("expected") else "")
                         or "")
            accepted.setdefault((target, key), []).append(reason)
    out: dict[str, list[RootCause]] = {}
    for target, causes in sorted(by_target.items()):
        for key, cause in causes.items():
            reasons = accepted.get((target, key), [])
            if reasons and all(reasons):
                cause.baseline_reason = reasons[0]
        out[target] = sorted(causes.values(), key=RootCause.sort_key)
    return out


def counts(causes: Sequence[RootCause]) -> tuple[int, int]:
    """(SHALL, SHOULD-or-weaker) root causes."""
    shall = sum(1 for c in causes if not c.warning)
    return shall, len(causes) - shall


def headline(causes: Sequence[RootCause]) -> str:
    shall, should = counts(causes)
    n = len(causes)
    return f"{n} finding{'' if n == 1 else 's'} ({shall} SHALL, {should} SHOULD)"


# --- the exit status ------------------------------------------------------------------------------------------------

OK, FAILED, BROKEN = 0, 1, 3  # results.ExitCode's values (results imports this module, not the reverse)


def exit_status(remaining_levels: Iterable[str], *, broken: int, strict: bool, unmet_baseline: int = 0) -> int:
    """The one rule: a SHALL root cause no baseline accepts (or, strict, any such root cause) or a stale baseline
    entry → 1; else a check that could not check → 3; else 0."""
    levels = list(remaining_levels)
    if any(lv not in requirements.WARNING_LEVELS for lv in levels) or (strict and levels) or unmet_baseline:
        return FAILED
    if broken:
        return BROKEN
    return OK


def exit_status_of_rows(marked: Sequence[Mapping[str, Any]], *, strict: bool, unmet_baseline: int = 0) -> int:
    """The exit status of results rows already marked by ``baseline.apply``."""
    remaining = [c.level for causes in group(marked).values() for c in causes if not c.baselined]
    broken = sum(1 for r in marked if r.get("outcome") == "broken" and not r.get("expected"))
    return exit_status(remaining, broken=broken, strict=strict, unmet_baseline=unmet_baseline)
