"""How a check says what it found.

A check is an ordinary test body that calls :func:`expect` (or raises one of the outcomes below). The outcomes are kept
apart on purpose: *failed* means the target broke a requirement; *broken* means the harness could not check; *skipped*
means the check does not apply, with the reason. Nothing here ever turns an unknown into a pass.

A check with several independent expectations wraps them in ``with expectations() as check:`` so that every one that
fails is reported (one grouped failure, each item with its own requirement ids, level and evidence), not only the
first. Each failure is also data (:class:`Finding`), which ``results.py`` carries to the reports.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

from smart_conformance import redact, requirements, root_causes
from smart_conformance.http import Exchange

_cited: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("smart_conformance_cited", default=())


@contextmanager
def citing(*ids: str) -> Iterator[None]:
    """Expectations made inside cite ``ids``: the plugin wraps each check in the ids of its requirement marker."""
    token = _cited.set(ids)
    try:
        yield
    finally:
        _cited.reset(token)


@dataclass(frozen=True)
class Finding:
    """One broken expectation as data: what it breaks (ids and their strongest level), expected / actual, evidence.

    The level is the requirement's, carried as a field: reports read it from here, never from the message text.
    ``cause``: a short stable key for what the server did, set by a check that knows it (e.g. ``"403 invalid_code"``);
    without it the root cause is the normalised ``actual`` (``root_causes.py``)."""

    requirements: tuple[str, ...]
    level: str
    expected: str
    actual: str
    detail: str = ""
    evidence: str = ""  # the judged exchange's one-line summary, else what was seen without HTTP (``seen``)
    curl: str = ""  # only from the judged exchange: never a request the check did not judge
    cause: str = ""

    @property
    def warning(self) -> bool:
        return self.level in requirements.WARNING_LEVELS

    @property
    def root_cause(self) -> str:
        """What this finding is one sighting of: requirement ids, level and observed cause (``root_causes.line``)."""
        return root_causes.line(self.requirements, self.level, root_causes.cause_of(self))

    def as_dict(self) -> dict[str, Any]:
        out = {"requirements": list(self.requirements), "level": self.level, "expected": self.expected,
               "actual": self.actual, "detail": self.detail, "evidence": self.evidence, "curl": self.curl}
        if self.cause:
            out["cause"] = self.cause
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Finding:
        return cls(requirements=tuple(raw.get("requirements") or ()), level=str(raw.get("level") or "SHALL"),
                   expected=str(raw.get("expected", "")), actual=str(raw.get("actual", "")),
                   detail=str(raw.get("detail") or ""), evidence=str(raw.get("evidence") or ""),
                   curl=str(raw.get("curl") or ""), cause=str(raw.get("cause") or ""))


class ConformanceFailure(AssertionError):
    """The target broke a requirement. The text holds everything a reader needs to reproduce and fix it."""

    def __init__(self, *, expected: str, actual: str, requirement_ids: Sequence[str],
                 exchange: Exchange | None = None, detail: str | None = None, seen: str | None = None,
                 cause: str | None = None) -> None:
        self.cause = redact.text(cause.strip()) if cause else ""
        self.expected = expected
        self.actual = actual
        self.requirement_ids = tuple(requirement_ids)
        self.exchange = exchange
        self.seen = redact.text(seen) if seen else ""
        self.requirements = requirements.lookup(self.requirement_ids)
        top = requirements.strongest(self.requirements)
        self.level = top.level if top else "SHALL"
        self.warning = bool(top and top.is_warning_level)
        self.detail = redact.text(detail) if detail else ""
        super().__init__(self._render(detail))

    @property
    def findings(self) -> tuple[Finding, ...]:
        """This failure as data (one item; a grouped failure has several)."""
        return (Finding(requirements=self.requirement_ids, level=self.level, expected=redact.text(self.expected),
                        actual=redact.text(self.actual), detail=self.detail,
                        evidence=self.exchange.summary() if self.exchange is not None else self.seen,
                        curl=redact.text(self.exchange.to_curl()) if self.exchange is not None else "",
                        cause=self.cause),)

    def _render(self, detail: str | None) -> str:
        tag = f"[{self.level}] " if self.warning else ""
        lines = [f"{tag}{', '.join(self.requirement_ids) or 'uncited'} ({self.level})"]
        for req in self.requirements:
            lines.append(f"  Requirement: {req.id} — {req.text}")
        lines.append(f"  Expected: {redact.text(self.expected)}")
        lines.append(f"  Actual:   {redact.text(self.actual)}")
        # the root cause this failure is one sighting of: Allure's categories match this line (report/allure_labels)
        lines.append(f"  {root_causes.LINE_PREFIX}{self.findings[0].root_cause}")
        for req in self.requirements:
            lines.append(f"  Spec:     {req.url}")
        if detail:
            lines.append(f"  Detail:   {redact.text(detail)}")
        if self.exchange is not None:
            lines.append(f"  Evidence: {self.exchange.summary()}")
            lines.append("  Reproduce with:")
            lines.append(f"    {self.exchange.to_curl()}")
        elif self.seen:
            lines.append(f"  Evidence: {self.seen}")
        return "\n".join(lines)


class ConformanceFailures(ConformanceFailure):
    """Several independent expectations of one check failed: all are reported, each with its own requirement ids,
    level and evidence (grouped, as schemathesis groups its failures). The check fails if any item breaks a SHALL; it
    only warns if every item is SHOULD/MAY."""

    def __init__(self, failures: Sequence[ConformanceFailure]) -> None:
        items: list[ConformanceFailure] = []
        for failure in failures:
            items.extend(failure.failures if isinstance(failure, ConformanceFailures) else (failure,))
        self.failures = tuple(items)
        self.requirement_ids = tuple(dict.fromkeys(i for f in self.failures for i in f.requirement_ids))
        self.requirements = requirements.lookup(self.requirement_ids)
        shall = [f for f in self.failures if not f.warning]
        decisive = shall or list(self.failures)
        self.level = min((f.level for f in decisive), key=lambda lv: requirements.LEVEL_RANK.get(lv, 9))
        self.warning = not shall
        self.expected = "; ".join(f.expected for f in self.failures)
        self.actual = "; ".join(f.actual for f in self.failures)
        self.exchange = next((f.exchange for f in self.failures if f.exchange is not None), None)
        self.seen = next((f.seen for f in self.failures if f.seen), "")
        self.detail = ""
        self.cause = ""  # each item has its own
        AssertionError.__init__(self, self._render_group())

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(item for f in self.failures for item in f.findings)

    def _render_group(self) -> str:
        tag = f"[{self.level}] " if self.warning else ""
        heads = "; ".join(dict.fromkeys(f"{', '.join(f.requirement_ids) or 'uncited'} ({f.level})"
                                        for f in self.failures))
        lines = [f"{tag}{len(self.failures)} expectations failed: {heads}"]
        for n, failure in enumerate(self.failures, 1):
            lines.append(f"  [{n}/{len(self.failures)}] " + str(failure).replace("\n", "\n  "))
        return "\n".join(lines)


class Expectations:
    """The independent expectations of one check, collected so that the first failure does not hide the others.

    Use through :func:`expectations`; ``expect``/``fail`` here record instead of raising."""

    def __init__(self) -> None:
        self.failures: list[ConformanceFailure] = []

    def expect(self, ok: bool, *, expected: str, actual: Any, requirement: str | Sequence[str] | None = None,
               exchange: Exchange | None = None, detail: str | None = None, seen: str | None = None,
               cause: str | None = None) -> bool:
        """Record a failure unless ``ok``; returns ``ok`` so a dependent follow-up can be skipped."""
        if not ok:
            self.fail(expected=expected, actual=describe(actual), requirement=requirement, exchange=exchange,
                      detail=detail, seen=seen, cause=cause)
        return ok

    def fail(self, *, expected: str, actual: str, requirement: str | Sequence[str] | None = None,
             exchange: Exchange | None = None, detail: str | None = None, seen: str | None = None,
             cause: str | None = None) -> None:
        try:
            fail(expected=expected, actual=actual, requirement=requirement, exchange=exchange, detail=detail,
                 seen=seen, cause=cause)
        except ConformanceFailure as failure:
            self.failures.append(failure)

    def raise_if_any(self, cause: BaseException | None = None) -> None:
        if len(self.failures) == 1:
            raise self.failures[0] from cause
        if self.failures:
            raise ConformanceFailures(self.failures) from cause


@contextmanager
def expectations() -> Iterator[Expectations]:
    """Check several independent things and report every one that fails, together, at the end of the block::

        with expectations() as check:
            check.expect(media == "application/json", expected=..., actual=..., requirement="RFC6749-07")
            check.expect(bool(token.access_token), expected=..., actual=...)

    A plain :func:`expect`/:func:`fail` inside the block still stops it; its failure is reported with those already
    recorded. Recorded failures win over a later could-not-check or not-applicable: the target already broke them."""
    collected = Expectations()
    try:
        yield collected
    except ConformanceFailure as failure:
        collected.failures.append(failure)
        collected.raise_if_any()
    except MixedLevels:
        raise  # a harness bug is never hidden behind findings
    except (Exception, pytest.skip.Exception) as other:
        collected.raise_if_any(cause=other)
        raise
    collected.raise_if_any()


class MixedLevels(Exception):
    """A harness bug, not a finding: an expectation left un-narrowed in a check that cites ids of different levels.

    Taking the strongest cited level would turn a SHOULD-only violation into a SHALL failure (this happened for CORS
    with credentials), so such an expectation must say which id it breaks with ``requirement=``. Reported as broken.
    """


class CouldNotCheck(Exception):
    """The harness could not reach a verdict (network, configuration, a page that changed): reported as broken."""

    def __init__(self, reason: str) -> None:
        super().__init__(redact.text(reason))


def _resolve_ids(requirement: str | Sequence[str] | None) -> tuple[str, ...]:
    if requirement is None:
        cited = _cited.get()
        levels = {requirements.LEVEL_RANK.get(r.level) for r in requirements.lookup(cited)}
        if len(levels) > 1:
            raise MixedLevels(f"this check cites requirements of different levels "
                              f"({', '.join(r.cite().split(':')[0] for r in requirements.lookup(cited))}) and an "
                              "expectation did not say which one it breaks: pass requirement='ID' to expect()/fail()")
        return cited
    if isinstance(requirement, str):
        return (requirement,)
    return tuple(requirement)


def fail(*, expected: str, actual: str, requirement: str | Sequence[str] | None = None,
         exchange: Exchange | None = None, detail: str | None = None, seen: str | None = None,
         cause: str | None = None) -> NoReturn:
    """Fail the check. ``requirement`` narrows which of the test's cited ids this finding breaks; ``cause``: a short
    stable key for what the server did, when the check knows it (else the normalised ``actual`` is the cause).

    The evidence is what the check judged, named by the check: ``exchange`` (the request and answer; the finding's
    curl reproduces it), else ``seen``, one line on evidence that is no HTTP exchange (a browser flow, a TLS scan, a
    cookie a page set, claims in an id_token), redacted here. Never the test's last exchange: that is often a control
    read, and a finding that shows (and gives a curl for) a request it did not judge misleads whoever reproduces it.
    """
    raise ConformanceFailure(expected=expected, actual=actual, requirement_ids=_resolve_ids(requirement),
                             exchange=exchange, detail=detail, seen=seen, cause=cause)


def expect(ok: bool, *, expected: str, actual: Any, requirement: str | Sequence[str] | None = None,
           exchange: Exchange | None = None, detail: str | None = None, seen: str | None = None,
           cause: str | None = None) -> None:
    if not ok:
        fail(expected=expected, actual=describe(actual), requirement=requirement, exchange=exchange, detail=detail,
             seen=seen, cause=cause)


def could_not_check(reason: str) -> NoReturn:
    raise CouldNotCheck(reason)


def not_applicable(reason: str) -> NoReturn:
    pytest.skip(f"not applicable: {reason}")


def describe(value: Any, limit: int = 400) -> str:
    """A short, redacted rendering of what came back."""
    if isinstance(value, str):
        out = value
    else:
        try:
            out = json.dumps(redact.data(value), ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            out = repr(value)
    out = redact.text(out)
    return out if len(out) <= limit else out[:limit] + "…"


class ScrubTracebacks:
    """pytest's traceback of a failing check shows the check's arguments (fixture values: grants, token responses) and
    reaches Allure's trace and junit.xml; scrubbed of every known secret before any reporter reads it."""

    @pytest.hookimpl(hookwrapper=True, trylast=True)  # the innermost wrapper: done before Allure's and junitxml read it
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
        outcome = yield
        report = outcome.get_result()
        if report.failed and report.longrepr is not None:
            report.longrepr = redact.text(report.longreprtext)
