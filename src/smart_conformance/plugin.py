"""pytest plugin: targets become parameters, suites get fixtures, every result gets its requirement and evidence.

Loaded through the ``pytest11`` entry point. Modelled on pytest-playwright: options in one named group, session
fixtures that tests or conftests can override, artifacts attached per test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from smart_conformance import checks, paths, redact, requirements
from smart_conformance.config import ConfigError, Target, load_target, load_targets
from smart_conformance.http import Evidence, RecordingClient, collecting, ssl_context
from smart_conformance.smart import discovery

REFERENCE_NAME = "reference"
_STATE_KEY = pytest.StashKey["RunState"]()



@dataclass
class RunState:
    """Per-process state of a run: the targets and, in embedded mode, the reference server this process started."""

    target_files: list[Path]
    targets: dict[str, Target] = field(default_factory=dict)
    embedded: bool = False
    faults: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    stack: ExitStack = field(default_factory=ExitStack)
    reference_env: dict[str, str] | None = None
    reachability: dict[str, str | None] = field(default_factory=dict)
    baseline: Any = None  # report.baseline.Baseline when --smart-baseline is given


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smart-conformance", "SMART on FHIR payer conformance")
    group.addoption("--target", action="append", default=[], metavar="FILE_OR_DIR",
                    help="target YAML file or folder of them (repeatable). None: the embedded reference server.")
    group.addoption("--reference-fault", action="append", default=[], metavar="NAME",
                    help="switch a fault on in the embedded reference server (repeatable; for proving checks fail).")
    group.addoption("--reference-variant", action="append", default=[], metavar="NAME",
                    help="switch a legitimate variant on in the embedded reference server (repeatable; for proving "
                         "checks fail only for real).")
    group.addoption("--smart-strict", action="store_true", default=False, dest="smart_strict",
                    help="SHOULD-level findings fail the run too.")
    group.addoption("--smart-reports", default=None, metavar="DIR",
                    help="write summary.json and summary.md (and Allure extras when --alluredir is set) here.")
    group.addoption("--smart-baseline", default=None, metavar="FILE", dest="smart_baseline",
                    help="YAML/JSON list of known failures {target, check, reason}: reported as expected, not gating.")
    group.addoption("--keep-traces", action="store_true", default=False,
                    help="keep the Playwright trace of every browser launch, not only of failed ones.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): requirement ids from the catalog that this check proves")
    config.addinivalue_line("markers", "needs_launch: the check needs a browser launch against the target")
    files = config.getoption("--target") or []
    state = RunState(target_files=[Path(f) for f in files], faults=tuple(config.getoption("--reference-fault") or ()),
                     variants=tuple(config.getoption("--reference-variant") or ()))
    if files:
        if state.faults or state.variants:
            raise pytest.UsageError("--reference-fault and --reference-variant only apply to the embedded reference "
                                    "server (no --target)")
        try:
            for target in load_targets(files):
                state.targets[target.name] = target
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    else:
        state.embedded = True
        if state.faults:
            from smart_conformance.reference.faults import FAULTS

            unknown = [f for f in state.faults if f not in FAULTS]
            if unknown:
                raise pytest.UsageError(f"unknown reference fault(s) {', '.join(unknown)}; "
                                        "list them with: smart-conformance serve-reference --list-faults")
        if state.variants:
            from smart_conformance.reference.variants import ActiveVariants

            try:
                ActiveVariants(state.variants)
            except ValueError as exc:
                raise pytest.UsageError(f"{exc}; list them with: smart-conformance serve-reference "
                                        "--list-variants") from None
    baseline_file = config.getoption("smart_baseline", default=None)
    if baseline_file:
        from smart_conformance.report import baseline

        try:
            state.baseline = baseline.load(baseline_file)
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[_STATE_KEY] = state


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE_KEY, None)
    if state is not None:
        state.stack.close()


def _state(config: pytest.Config) -> RunState:
    return config.stash[_STATE_KEY]


def target_names(config: pytest.Config) -> list[str]:
    state = _state(config)
    return [REFERENCE_NAME] if state.embedded else list(state.targets)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames:
        names = target_names(metafunc.config)
        metafunc.parametrize("target", names, ids=names, indirect=True, scope="session")


def _start_embedded(state: RunState) -> dict[str, str]:
    """Start the reference server in this process (one per xdist worker) on first use; stopped at unconfigure."""
    if state.reference_env is None:
        from smart_conformance.reference.server import ReferenceServer

        try:
            server = state.stack.enter_context(ReferenceServer(faults=list(state.faults),
                                                               variants=list(state.variants)))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        state.reference_env = server.target_env()
    return state.reference_env


def resolve_target(config: pytest.Config, name: str) -> Target:
    state = _state(config)
    if name not in state.targets:
        if not state.embedded:
            raise checks.CouldNotCheck(f"unknown target {name!r}")
        from smart_conformance.reference.variants import ActiveVariants

        env = {**os.environ, **_start_embedded(state)}
        state.targets[name] = load_target(paths.reference_target(), env,
                                          patch=ActiveVariants(state.variants).target_patch())
    return state.targets[name]


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Target:
    """The payer under test (one parameter per target)."""
    return resolve_target(request.config, request.param)


def build_client(target: Target) -> RecordingClient:
    verify: Any = False if target.tls.insecure else ssl_context(target.tls.ca_bundle, target.tls.client_cert,
                                                                  target.tls.client_key)
    return RecordingClient(verify=verify)


@pytest.fixture(scope="session")
def http(request: pytest.FixtureRequest, target: Target) -> Iterator[RecordingClient]:
    """A recording HTTP client for the target. An unreachable target makes every check broken after one attempt."""
    state = _state(request.config)
    client = build_client(target)
    if target.name not in state.reachability:
        state.reachability[target.name] = _probe(client, target)
    problem = state.reachability[target.name]
    if problem:
        client.close()
        raise checks.CouldNotCheck(problem)
    yield client
    client.close()


def _probe(client: RecordingClient, target: Target) -> str | None:
    url = discovery.smart_configuration_url(target.fhir_base_url)
    try:
        client.get(url, timeout=10.0)
    except httpx.ConnectError as exc:
        return f"target '{target.name}' is unreachable: cannot connect to {url} ({_reason(exc)})"
    except httpx.TimeoutException:
        return f"target '{target.name}' is unreachable: no answer from {url} within 10 s"
    except httpx.TransportError as exc:
        return f"target '{target.name}' could not be reached at {url}: {_reason(exc)}"
    return None


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("\n")[0]


@pytest.fixture(scope="session")
def smart_configuration(http: RecordingClient, target: Target) -> discovery.Document:
    """``{fhir}/.well-known/smart-configuration`` as the target serves it to a JSON-accepting client."""
    return discovery.fetch_json(http, discovery.smart_configuration_url(target.fhir_base_url))


@pytest.fixture(scope="session")
def smart_config_raw(smart_configuration: discovery.Document) -> dict[str, Any]:
    """The SMART configuration exactly as served, for the checks that judge the document itself."""
    if not smart_configuration.ok:
        raise checks.CouldNotCheck(
            f"{smart_configuration.url} did not give a JSON object (HTTP {smart_configuration.status}); "
            "checks that build on discovery cannot run")
    return smart_configuration.json


@pytest.fixture(scope="session")
def smart_config(smart_config_raw: dict[str, Any], smart_configuration: discovery.Document) -> dict[str, Any]:
    """The SMART configuration as a tolerant client reads it (relative endpoint URLs resolved against the document),
    so one defect in the document fails its own check instead of making every later check impossible."""
    return discovery.resolved(smart_config_raw, smart_configuration.url)


@pytest.fixture(scope="session")
def smart_version(target: Target, smart_config: dict[str, Any]) -> str:
    """SMART generation of the target: from its config, or detected from discovery."""
    return target.smart_version if target.smart_version in ("1", "2") else discovery.detect_smart_version(smart_config)


@pytest.fixture(scope="session")
def openid_configuration(http: RecordingClient, smart_config: dict[str, Any]) -> discovery.Document:
    issuer = smart_config.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        checks.not_applicable("smart-configuration advertises no issuer (sso-openid-connect not offered)")
    return discovery.fetch_json(http, discovery.openid_configuration_url(issuer))


@pytest.fixture(scope="session")
def capability_statement(http: RecordingClient, target: Target) -> discovery.Document:
    return discovery.fetch_json(http, target.fhir_base_url + "/metadata", accept="application/fhir+json")


@pytest.fixture(scope="session")
def browser_session(request: pytest.FixtureRequest, target: Target) -> Iterator[Any]:
    """One Chromium per worker and target (it pins the target's private CA); a fresh context per launch."""
    from smart_conformance.browser import BrowserSession, BrowserUnavailable

    try:
        session = BrowserSession(ca_bundle=target.tls.ca_bundle, tls_fallback=not target.tls.insecure)
        session.start()
    except BrowserUnavailable as exc:
        raise checks.CouldNotCheck(str(exc)) from None
    yield session
    session.close()


@pytest.fixture(scope="session")
def launcher(request: pytest.FixtureRequest, target: Target, http: RecordingClient, browser_session: Any,
             smart_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Makes SMART standalone launches against the target, driven by its login recipe."""
    from smart_conformance.launcher import Launcher

    return Launcher(target, http, browser_session, smart_config, tmp_path_factory.mktemp(f"launches-{target.name}"),
                    keep_traces=bool(request.config.getoption("--keep-traces")))


@pytest.fixture(scope="session")
def launch(launcher: Any) -> Any:
    """The primary member's full-scope launch, shared by every check that only needs a token from it."""
    return launcher.shared()


# ---------------------------------------------------------------------------------------------------------------------
# Collection: every suite test cites known requirements; check names are unique (the fault catalog refers to them).

def _is_suite_item(item: pytest.Item) -> bool:
    return "target" in getattr(item, "fixturenames", ())


def cited_ids(item: pytest.Item) -> tuple[str, ...]:
    ids: list[str] = []
    for mark in item.iter_markers("requirement"):
        ids.extend(str(a) for a in mark.args)
    return tuple(dict.fromkeys(ids))


def check_name(item: pytest.Item) -> str:
    return getattr(item, "originalname", None) or item.name.split("[", 1)[0]


def area_of(item: pytest.Item) -> str:
    """The suite folder a check lives in (suites/<area>/test_*.py) is its area."""
    return Path(str(item.path)).parent.name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    suite_items = [item for item in items if _is_suite_item(item)]
    if not suite_items:
        return
    known = requirements.catalog()
    owners: dict[str, str] = {}
    problems: list[str] = []
    for item in suite_items:
        ids = cited_ids(item)
        if not ids:
            problems.append(f"{item.nodeid}: cites no requirement; add @pytest.mark.requirement('ID', ...)")
        for rid in ids:
            if rid not in known:
                problems.append(f"{item.nodeid}: cites unknown requirement {rid!r}; add it to fixtures/requirements/")
        name, where = check_name(item), str(item.path)
        if owners.setdefault(name, where) != where:
            problems.append(f"{item.nodeid}: check name {name!r} is also used in {owners[name]}; names must be unique")
    if problems:
        raise pytest.UsageError("invalid suite:\n  " + "\n  ".join(dict.fromkeys(problems)))


# ---------------------------------------------------------------------------------------------------------------------
# Running: evidence per test, requirement context for failure messages, Allure labels and attachments.

_EVIDENCE_KEY = pytest.StashKey[Evidence]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if not _is_suite_item(item):
        yield
        return
    evidence = Evidence()
    item.stash[_EVIDENCE_KEY] = evidence
    token = checks.set_cited(cited_ids(item))
    with collecting(evidence):
        yield
    checks.reset_cited(token)



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if _is_suite_item(item):
        from smart_conformance.report import allure_labels

        allure_labels.label_test(item, _target_param(item), area_of(item), check_name(item), cited_ids(item))
    yield
    if _is_suite_item(item):
        from smart_conformance.report import allure_labels

        allure_labels.attach_evidence(item.stash.get(_EVIDENCE_KEY, Evidence()))


def _target_param(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    return str(callspec.params.get("target", "")) if callspec else ""


def classify(excinfo: pytest.ExceptionInfo[BaseException] | None) -> str:
    if excinfo is None:
        return "passed"
    exc = excinfo.value
    if isinstance(exc, pytest.skip.Exception):
        return "skipped"
    if isinstance(exc, checks.ConformanceFailure):
        return "warning" if exc.warning else "failed"
    if isinstance(exc, AssertionError):
        return "failed"
    return "broken"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not _is_suite_item(item):
        return
    if call.when == "call" or (call.when == "setup" and report.outcome != "passed"):
        verdict = "skipped" if report.skipped else classify(call.excinfo)
        message = ""
        if call.excinfo is not None:
            exc = call.excinfo.value
            if verdict == "skipped":
                message = str(getattr(exc, "msg", exc))
            else:
                message = redact.text(str(exc)) or type(exc).__name__
                if verdict == "broken":
                    message = f"could not check: {type(exc).__name__}: {message.splitlines()[0] if message else ''}"
                    report.longrepr = message
                elif isinstance(exc, checks.ConformanceFailure):
                    report.longrepr = message
        violated = list(cited_ids(item))
        if call.excinfo is not None and isinstance(call.excinfo.value, checks.ConformanceFailure):
            violated = list(call.excinfo.value.requirement_ids) or violated
        report.user_properties.append(("smart_result", json.dumps({
            "target": _target_param(item), "area": area_of(item), "check": check_name(item),
            "nodeid": item.nodeid, "requirements": list(cited_ids(item)), "violated": violated, "outcome": verdict,
            "message": message, "doc": (item.obj.__doc__ or "").strip().splitlines()[0] if getattr(item, "obj", None)
            and item.obj.__doc__ else "",
        })))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for key, value in report.user_properties:
        if key == "smart_result":
            _RESULTS.append(json.loads(value))


_RESULTS: list[dict[str, Any]] = []


def collected_results() -> list[dict[str, Any]]:
    return list(_RESULTS)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return
    out = config.getoption("--smart-reports")
    if out:
        from smart_conformance.report import summary

        summary.write_all(Path(out), collected_results(), strict=bool(config.getoption("smart_strict")),
                          attestations=attestation_files(config), baseline=_state(config).baseline)
    alluredir = config.getoption("--alluredir", default=None)
    if alluredir:
        from smart_conformance.report import allure_labels

        allure_labels.write_run_files(Path(alluredir), target_names(config), _state(config))


def attestation_files(config: pytest.Config) -> dict[str, Path | None]:
    """Per target, its attestation file. The embedded reference's Target only exists in the processes that ran its
    tests (it needs the server's env), so the controller reads the path from the raw reference target YAML."""
    state = _state(config)
    if state.embedded:
        from smart_conformance.report.attestations import reference_attestations_path

        return {REFERENCE_NAME: reference_attestations_path()}
    return {name: t.attestations for name, t in state.targets.items()}


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not _RESULTS:
        return
    from smart_conformance.report import summary

    terminalreporter.write_sep("=", "smart-payer-conformance")
    terminalreporter.write_line(summary.render_console(collected_results(), strict=bool(config.getoption("smart_strict")),
                                                       baseline=_state(config).baseline))
