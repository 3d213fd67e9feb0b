"""What a check found, as data, and how it travels from the test to the reports and the exit status.

Each suite test ends in one :class:`CheckResult` with an :class:`Outcome`: *passed*; *failed* (the target broke a
SHALL); *warning* (it broke only SHOULD/MAY requirements); *broken* (the harness could not check); *skipped* (not
applicable, with the reason). A baselined failure keeps its outcome and is marked ``expected``. The level of what was
broken is a field (``level``, and per item in ``findings``), never read back from the message text.

Flow: ``pytest_runtest_makereport`` (on the process that ran the test) turns the exception into a CheckResult and puts
its JSON form on the report (``report.smart_result``: the one way a result crosses from an xdist worker);
``pytest_runtest_logreport`` (on the controller) collects it, typed, in ``config.stash[RESULTS]``;
``pytest_sessionfinish`` hands one :class:`RunResults` to the report writers and sets the session's exit status
(:class:`ExitCode`, computed from the run's root causes: ``root_causes.py``), which is what ``smart-conformance run``
returns.

Writers depend on results, never the reverse: this module imports neither ``report/`` nor the plugin. The plugin
hands the hooks what they need from it (:class:`SessionHooks`: which test is a check and of what, the run's state,
the writers and the console summary) when it registers them; ``tests/unit/test_import_direction.py`` keeps it so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

import pytest

from smart_conformance import baseline as baseline_mod
from smart_conformance import checks, redact, root_causes
from smart_conformance.baseline import Baseline


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"  # the target broke a SHALL requirement
    WARNING = "warning"  # the target broke only SHOULD / MAY requirements
    BROKEN = "broken"  # the harness could not check
    SKIPPED = "skipped"  # not applicable to this target, with the reason

    @property
    def is_finding(self) -> bool:
        return self in (Outcome.FAILED, Outcome.WARNING)


class ExitCode(IntEnum):
    """The exit status of a suite run (pytest or ``smart-conformance run``); baselined failures do not count."""

    OK = 0  # every check that ran passed (or only warned, without --strict)
    FAILED = 1  # conformance failures (or SHOULD findings with --strict), or a stale baseline entry
    USAGE = 2  # usage or configuration error (the CLI's; pytest's own usage error is 4)
    BROKEN = 3  # no failures, but something could not be checked


@dataclass(frozen=True)
class CheckResult:
    """One check against one target. ``requirements``: the ids it cites; ``violated``: those its findings break."""

    target: str
    area: str
    check: str
    nodeid: str
    outcome: Outcome
    requirements: tuple[str, ...] = ()
    violated: tuple[str, ...] = ()
    level: str = ""  # of the strongest requirement actually broken (failed/warning only)
    message: str = ""  # redacted; the full text as in JUnit and Allure
    doc: str = ""  # first line of the check's docstring
    findings: tuple[checks.Finding, ...] = ()  # every failed expectation, each with its ids, level and evidence
    expected: bool = False  # baselined: a known failure, reported but not gating
    baseline_reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (the wire format between processes, and the row the report builders read)."""
        out: dict[str, Any] = {
            "target": self.target, "area": self.area, "check": self.check, "nodeid": self.nodeid,
            "requirements": list(self.requirements), "violated": list(self.violated or self.requirements),
            "outcome": str(self.outcome), "message": self.message, "doc": self.doc,
        }
        if self.level:
            out["level"] = self.level
        if self.findings:
            out["findings"] = [f.as_dict() for f in self.findings]
        if self.expected:
            out["expected"] = True
            out["baseline_reason"] = self.baseline_reason
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CheckResult:
        return cls(target=str(raw["target"]), area=str(raw["area"]), check=str(raw["check"]),
                   nodeid=str(raw["nodeid"]), outcome=Outcome(raw["outcome"]),
                   requirements=tuple(raw.get("requirements") or ()), violated=tuple(raw.get("violated") or ()),
                   level=str(raw.get("level") or ""), message=str(raw.get("message") or ""),
                   doc=str(raw.get("doc") or ""),
                   findings=tuple(checks.Finding.from_dict(f) for f in raw.get("findings") or ()),
                   expected=bool(raw.get("expected")), baseline_reason=str(raw.get("baseline_reason") or ""))


def rows(results: Sequence[CheckResult | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Report builders read plain rows: typed results become their JSON form (copies either way)."""
    return [r.as_dict() if isinstance(r, CheckResult) else dict(r) for r in results]


@dataclass(frozen=True)
class RunResults:
    """Everything a report writer needs about one run (see ``report/writers.py``)."""

    results: tuple[CheckResult, ...]
    strict: bool = False
    baseline: Baseline | None = None
    attestations: Mapping[str, Path | None] = field(default_factory=dict)  # per target, its attestation file
    targets: Mapping[str, str] = field(default_factory=dict)  # per target name, its FHIR base URL when known
    embedded: bool = False  # the embedded reference server was the target
    faults: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    target_files: Mapping[str, str] = field(default_factory=dict)  # per target name, the file it was read from
    tallies: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # per target: sign_ins, rate_limited...

    def rows(self) -> list[dict[str, Any]]:
        return rows(self.results)

    def marked(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows marked by the baseline (what it accepts) and its unmet entries (``baseline.apply``)."""
        return baseline_mod.apply(self.rows(), self.baseline)

    def root_causes(self) -> dict[str, list[root_causes.RootCause]]:
        """Per target, its findings grouped by root cause, most severe first, baselined ones marked."""
        return root_causes.group(self.marked()[0])

    @property
    def exit_code(self) -> ExitCode:
        """From the root causes no baseline accepts: 1 for a SHALL one (any, strict) or a stale entry; 3 for a
        check that could not check; else 0."""
        marked, unmet = self.marked()
        return ExitCode(root_causes.exit_status_of_rows(marked, strict=self.strict, unmet_baseline=len(unmet)))


def classify(excinfo: pytest.ExceptionInfo[BaseException] | None) -> Outcome:
    if excinfo is None:
        return Outcome.PASSED
    exc = excinfo.value
    if isinstance(exc, pytest.skip.Exception):
        return Outcome.SKIPPED
    if isinstance(exc, checks.ConformanceFailure):
        return Outcome.WARNING if exc.warning else Outcome.FAILED
    return Outcome.BROKEN  # a plain assert is the harness's own invariant: its failure never blames the target


@dataclass(frozen=True)
class CheckIdentity:
    """Which check a test item is, as the plugin knows it."""

    target: str
    area: str
    check: str
    cited: tuple[str, ...]  # the requirement ids it cites


@dataclass(frozen=True)
class SessionHooks:
    """What the result hooks need from the plugin, handed to :func:`register` (so that this module imports neither
    the plugin nor the report writers)."""

    identify: Callable[[pytest.Item], CheckIdentity | None]  # None: not a suite check
    run: Callable[[pytest.Config, tuple[CheckResult, ...]], RunResults]  # the run, with the plugin's state
    write: Callable[[pytest.Config, RunResults], None]  # every report writer whose folder was given
    console: Callable[[RunResults], str]  # the console summary


def result_of(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport,
              identity: CheckIdentity) -> CheckResult:
    """The check's result from pytest's report of its setup or call phase; sets the report's text to match."""
    outcome = Outcome.SKIPPED if report.skipped else classify(call.excinfo)
    message, level, findings = "", "", ()
    cited = identity.cited
    violated = cited
    if call.excinfo is not None:
        exc = call.excinfo.value
        if outcome is Outcome.SKIPPED:
            message = str(getattr(exc, "msg", exc))
        else:
            message = redact.text(str(exc)) or type(exc).__name__
            if outcome is Outcome.BROKEN:
                message = f"could not check: {type(exc).__name__}: {message.splitlines()[0] if message else ''}"
                report.longrepr = message
            elif isinstance(exc, checks.ConformanceFailure):
                report.longrepr = message
                violated = exc.requirement_ids or cited
                level, findings = exc.level, exc.findings
    obj = getattr(item, "obj", None)
    doc = (obj.__doc__ or "").strip().splitlines()[0] if obj is not None and obj.__doc__ else ""
    return CheckResult(target=identity.target, area=identity.area, check=identity.check, nodeid=item.nodeid, outcome=outcome, requirements=cited, violated=violated, level=level,
                       message=message, doc=doc, findings=findings)


# ---------------------------------------------------------------------------------------------------------------------
# pytest hooks (registered by plugin.pytest_configure)

RESULTS = pytest.StashKey[list[CheckResult]]()


def register(config: pytest.Config, hooks: SessionHooks) -> None:
    """Collect this session's results in ``config.stash[RESULTS]`` (called from plugin.pytest_configure)."""
    if not config.pluginmanager.has_plugin("smart_conformance.results"):
        config.pluginmanager.register(ResultCollector(config, hooks), "smart_conformance.results")


def collected(config: pytest.Config) -> list[CheckResult]:
    """The results of the checks run so far (on the controller: from every worker)."""
    return list(config.stash.get(RESULTS, []))


class ResultCollector:
    """The result and reporting hooks of one session (a pluggy plugin object, so no module-level state)."""

    def __init__(self, config: pytest.Config, hooks: SessionHooks) -> None:
        self.config = config
        self.hooks = hooks
        self.other_failures = 0  # failed reports of tests that are not suite checks, in the same session
        config.stash[RESULTS] = []

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)  # outermost: Allure has read the real outcome before relabeling
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        identity = self.hooks.identify(item)
        if identity is None:
            return
        report.smart_check = True  # type: ignore[attr-defined]
        if call.when == "call" or (call.when == "setup" and report.outcome != "passed"):
            result = result_of(item, call, report, identity)
            report.smart_result = result.as_dict()  # type: ignore[attr-defined]  # crosses from xdist workers
            _junit_outcome(item, report, result)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        raw = getattr(report, "smart_result", None)
        if isinstance(raw, dict):
            self.config.stash[RESULTS].append(CheckResult.from_dict(raw))
        elif report.failed and not getattr(report, "smart_check", False):
            self.other_failures += 1

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Every registered report writer gets the run; the session's exit status becomes the run's ExitCode."""
        if hasattr(self.config, "workerinput"):
            return
        run = self.hooks.run(self.config, tuple(collected(self.config)))
        self.hooks.write(self.config, run)
        if run.results and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            code = run.exit_code
            if code == ExitCode.OK and self.other_failures:
                code = ExitCode.FAILED  # a test other than a suite check failed in the same session
            session.exitstatus = int(code)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput") or not collected(self.config):
            return
        terminalreporter.write_sep("=", "smart-payer-conformance")
        terminalreporter.write_line(self.hooks.console(self.hooks.run(self.config, tuple(collected(self.config)))))


def _junit_outcome(item: pytest.Item, report: pytest.TestReport, result: CheckResult) -> None:
    """What pytest (and so junit.xml, and every CI dashboard reading it) counts, kept in line with the exit code.

    A SHOULD finding is not a failure unless ``--smart-strict``: the report is relabelled *passed*, with the warning
    kept as testcase properties ``smart_outcome=warning`` and ``smart_warning=<finding>`` (plus ``smart_level``).
    Passed rather than skipped, because the check did run and the target did meet every SHALL it cites; a skip would
    read as "not run" and merge with not-applicable. Allure keeps the real outcome (this wrapper runs after Allure's)
    and files it under "SHOULD findings". Item properties are used because junit.xml writes those of the teardown
    report. A grouped failure's JUnit message lists every failed expectation with its requirement ids."""
    item.user_properties.append(("smart_outcome", str(result.outcome)))
    if result.level:
        item.user_properties.append(("smart_level", result.level))
    if result.outcome is Outcome.WARNING and not item.config.getoption("smart_strict"):
        item.user_properties.append(("smart_warning", result.message))
        report.outcome = "passed"
        report.longrepr = None
