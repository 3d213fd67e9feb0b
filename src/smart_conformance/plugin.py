"""pytest plugin: targets become parameters, suites get fixtures, every result gets its requirement and evidence.

Loaded through the ``pytest11`` entry point. Modelled on pytest-playwright: options in one named group, session
fixtures that tests or conftests can override, artifacts attached per test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest

from smart_conformance import checks, distribution, paths, refusals, requirements, results, tally
from smart_conformance.config import ConfigError, Target, load_target, load_targets
from smart_conformance.http import (
    Backoff,
    Evidence,
    RecordingClient,
    collecting,
    current_evidence,
    ssl_context,
    transport_problem,
)
from smart_conformance.smart import discovery
from smart_conformance.testplan import Needs, needs

if TYPE_CHECKING:  # imported lazily below: Playwright and the launcher cost time a TLS-only run need not pay
    from smart_conformance.browser import BrowserSession
    from smart_conformance.launcher import Launcher
    from smart_conformance.smart.launch import LaunchResult

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
    baseline: Any = None  # baseline.Baseline when --smart-baseline is given
    shard: tuple[int, int] | None = None  # --shard i/n: this CI job runs only its share of the targets


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
    group.addoption("--shard", default=None, metavar="I/N",
                    help="run only the I-th of N shares of the targets (by sorted target name), for N parallel CI "
                         "jobs; fold their report folders with: smart-conformance merge")
    group.addoption("--keep-traces", action="store_true", default=False,
                    help="keep the Playwright trace of every browser launch, not only of failed ones.")
    group.addoption("--smart-profile", choices=("default", "production"), default="default", dest="smart_profile",
                    help="production: only checks harmless by construction (no wrong password, no writes or write "
                         "probes, no revocation but of the run's own tokens, no bulk export unless --with-bulk), the "
                         "sign-in budget at its minimum, --max-rps 2 unless given.")
    group.addoption("--with-bulk", action="store_true", default=False, dest="smart_with_bulk",
                    help="with --smart-profile production: run the bulk export checks too.")
    group.addoption("--max-rps", type=float, default=None, dest="smart_max_rps", metavar="N",
                    help="at most N requests a second from the harness's HTTP clients (default: no cap; 2 under the "
                         "production profile). The browser's own page loads are not paced.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): requirement ids from the catalog that this check proves")
    config.addinivalue_line("markers", "reads_run: a check that judges what the other checks of its target saw (the "
                            "error format of every refusal); it runs after them")
    config.addinivalue_line("markers", "proves(*faults): reference faults under which this check fails "
                            "(smart_conformance.testplan)")
    config.addinivalue_line("markers", "production_unsafe(why, bulk): not harmless by construction; the production "
                            "profile skips it (smart_conformance.testplan.production_unsafe)")
    from smart_conformance.http import PACE

    PACE.set(max_rps(config))
    refusals.forget()
    config.pluginmanager.register(checks.ScrubTracebacks(), "smart-conformance-scrub-tracebacks")
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
        from smart_conformance import baseline

        try:
            state.baseline = baseline.load(baseline_file)
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    if config.getoption("--shard", default=None):
        try:
            state.shard = distribution.parse_shard(config.getoption("--shard"))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[_STATE_KEY] = state
    # typed results and the exit status: results.py; it is handed what it needs from here (writers depend on results,
    # never the reverse)
    results.register(config, results.SessionHooks(identify=_identify, run=run_results, write=_write_reports,
                                                  console=_console))
    tally.drain()  # counts of an earlier session in this process (pytester runs) are not this run's
    config.pluginmanager.register(TallyCollector(config), "smart_conformance.tally")


def _identify(item: pytest.Item) -> results.CheckIdentity | None:
    if not _is_suite_item(item):
        return None
    return results.CheckIdentity(target=_target_param(item), area=area_of(item), check=check_name(item),
                                 cited=cited_ids(item))


def run_results(config: pytest.Config, collected: tuple[results.CheckResult, ...]) -> results.RunResults:
    """The run as the report writers and the exit status see it: the results and what was run."""
    state = _state(config)
    names = target_names(config)
    urls = {n: state.targets[n].fhir_base_url for n in names if n in state.targets}
    files = {n: str(state.targets[n].source) for n in names if n in state.targets}
    return results.RunResults(results=collected, strict=bool(config.getoption("smart_strict")),
                              baseline=state.baseline, attestations=attestation_files(config),
                              targets={n: urls.get(n, "") for n in names}, embedded=state.embedded,
                              faults=state.faults, variants=state.variants, target_files=files,
                              tallies=tallies(config))


def _write_reports(config: pytest.Config, run: results.RunResults) -> None:
    from smart_conformance.report.writers import write_reports

    alluredir = config.getoption("--alluredir", default=None)
    reports = config.getoption("--smart-reports")
    write_reports(run, reports=Path(reports) if reports else None, allure=Path(alluredir) if alluredir else None)


def _console(run: results.RunResults) -> str:
    from smart_conformance.report import summary

    return summary.render_console(run)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE_KEY, None)
    if state is not None:
        state.stack.close()


def _state(config: pytest.Config) -> RunState:
    return config.stash[_STATE_KEY]


def all_target_names(config: pytest.Config) -> list[str]:
    state = _state(config)
    return [REFERENCE_NAME] if state.embedded else list(state.targets)


def target_names(config: pytest.Config) -> list[str]:
    """The targets this run checks: all of them, or with ``--shard i/n`` this job's share."""
    return distribution.shard_targets(all_target_names(config), _state(config).shard)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One parameter per target, each its own xdist group: under ``--dist loadgroup`` (the default with ``-n``,
    scheduled by distribution.make_scheduler) all of a target's checks run on one worker, which signs in once."""
    if "target" in metafunc.fixturenames:
        names = all_target_names(metafunc.config)  # the other shards' targets are deselected at collection
        params = [pytest.param(name, id=name, marks=pytest.mark.xdist_group(name)) for name in names]
        metafunc.parametrize("target", params, indirect=True, scope="session")


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Any:
    """Before xdist reads ``-n``: a suite run distributes by target (distribution.default_to_loadgroup)."""
    distribution.default_to_loadgroup(config)
    return (yield)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return distribution.make_scheduler(config, log, all_target_names(config))  # one work unit per target


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
    """The target's recording client: its TLS trust, and its rate limits waited out within ``rate_limit.max_wait_s``
    per request, each wait counted in the target's tally."""
    verify: Any = False if target.tls.insecure else ssl_context(target.tls.ca_bundle, target.tls.client_cert,
                                                                  target.tls.client_key)
    backoff = Backoff(target.rate_limit.max_wait_s, tally_as=target.name, source=str(target.source))
    return RecordingClient(verify=verify, cacert=target.tls.ca_bundle, backoff=backoff)


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
    url = target.smart_configuration_url or discovery.smart_configuration_url(target.fhir_base_url)
    try:
        client.get(url, timeout=10.0)
    except httpx.TransportError as exc:  # DNS, refused, untrusted CA, TLS handshake, silence, oversized answer
        return f"target '{target.name}' {transport_problem(exc, url, target.source)}"
    return None


@pytest.fixture(scope="session")
def smart_configuration(http: RecordingClient, target: Target) -> discovery.Document:
    """The SMART configuration as the target serves it to a JSON-accepting client: at the target file's
    ``discovery.smart_configuration_url`` when it names one, else ``{fhir}/.well-known/smart-configuration``."""
    url = target.smart_configuration_url or discovery.smart_configuration_url(target.fhir_base_url)
    return discovery.fetch_json(http, url)


def declares_v1(target: Target) -> bool:
    """The target file says the server implements SMART v1 (``smart_version: "1"``), not just that it was detected."""
    return target.smart_version == "1"


@pytest.fixture(scope="session")
def smart_discovery(request: pytest.FixtureRequest, target: Target,
                    smart_configuration: discovery.Document) -> discovery.Discovery:
    """Where a SMART client finds the endpoints: the SMART configuration, else (SMART v1) the CapabilityStatement's
    oauth-uris. A missing SMART configuration is its own finding (the discovery check that it is served), not a reason
    for every later check to go unchecked."""
    statement = None if smart_configuration.ok else request.getfixturevalue("capability_statement")
    found = discovery.discover(smart_configuration, statement)
    if found is None:
        meta = f"HTTP {statement.status}" if statement is not None else "not fetched"
        raise checks.CouldNotCheck(
            f"{smart_configuration.url} did not give a JSON object (HTTP {smart_configuration.status}) and the "
            f"CapabilityStatement ({meta}) has no oauth-uris extension; checks that build on discovery cannot run")
    return found


@pytest.fixture(scope="session")
@needs(Needs.SMART_CONFIGURATION)
def smart_config_raw(target: Target, smart_configuration: discovery.Document) -> dict[str, Any]:
    """The SMART configuration exactly as served, for the checks that judge the document itself."""
    if not smart_configuration.ok:
        if declares_v1(target):
            checks.not_applicable(
                f"the target declares SMART v1 (smart_version: \"1\") and serves no SMART configuration at "
                f"{smart_configuration.url} (HTTP {smart_configuration.status}); its endpoints come from the "
                "CapabilityStatement's oauth-uris, and this check judges the SMART configuration document")
        raise checks.CouldNotCheck(
            f"{smart_configuration.url} did not give a JSON object (HTTP {smart_configuration.status}); "
            "the checks that judge that document cannot run")
    return smart_configuration.json


@pytest.fixture(scope="session")
def smart_config(smart_discovery: discovery.Discovery) -> dict[str, Any]:
    """The endpoints and capabilities as a tolerant client reads them (relative endpoint URLs resolved against the
    document; SMART v1: from the CapabilityStatement's oauth-uris), so one defect in the document fails its own
    check instead of making every later check impossible."""
    return smart_discovery.config


@pytest.fixture(scope="session")
def smart_version(target: Target, smart_config: dict[str, Any]) -> str:
    """SMART generation of the target: from its config, or detected from discovery."""
    return target.smart_version if target.smart_version in ("1", "2") else discovery.detect_smart_version(smart_config)


def _issuer_from_id_token(request: pytest.FixtureRequest) -> str | None:
    """SMART v1 discovery names no issuer: an OpenID client learns it from the id_token's ``iss`` (OpenID Connect
    Discovery §2 starts from the issuer). Only the claim is read here; the id_token checks verify the token."""
    import jwt

    launch = request.getfixturevalue("launch")
    id_token = getattr(getattr(launch, "token", None), "id_token", None)
    if not isinstance(id_token, str):
        return None
    try:
        iss = jwt.decode(id_token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return None
    return iss if isinstance(iss, str) and iss.startswith("https://") else None


@pytest.fixture(scope="session")
def openid_configuration(request: pytest.FixtureRequest, http: RecordingClient,
                         smart_discovery: discovery.Discovery) -> discovery.Document:
    issuer = smart_discovery.config.get("issuer")
    if (not isinstance(issuer, str) or not issuer) and smart_discovery.source == discovery.CAPABILITY_STATEMENT:
        issuer = _issuer_from_id_token(request)
        if issuer is None:
            checks.not_applicable("SMART v1 discovery (CapabilityStatement oauth-uris) names no issuer and the "
                                  "member's launch gave no id_token with an https iss (OpenID Connect not offered)")
    if not isinstance(issuer, str) or not issuer:
        checks.not_applicable("smart-configuration advertises no issuer (sso-openid-connect not offered)")
    return discovery.fetch_json(http, discovery.openid_configuration_url(issuer))


@pytest.fixture(scope="session")
def advertised_issuer(request: pytest.FixtureRequest, smart_discovery: discovery.Discovery) -> str | None:
    """The issuer a client learned in discovery, for comparing with an id_token's iss: smart-configuration's, or on
    SMART v1 discovery (which names none) the issuer of the OpenID configuration (OpenID Connect Core §3.1.3.7: the
    issuer is "typically obtained during Discovery"). None when neither says."""
    issuer = smart_discovery.config.get("issuer")
    if isinstance(issuer, str) and issuer:
        return issuer
    if smart_discovery.source != discovery.CAPABILITY_STATEMENT:
        return None
    try:
        oidc = request.getfixturevalue("openid_configuration")
    except pytest.skip.Exception:
        return None
    found = oidc.json.get("issuer") if oidc.ok else None
    return found if isinstance(found, str) and found else None


@pytest.fixture(scope="session")
def capability_statement(http: RecordingClient, target: Target) -> discovery.Document:
    return discovery.fetch_json(http, discovery.metadata_url(target.fhir_base_url), accept="application/fhir+json")


@pytest.fixture(scope="session")
def browser_session(request: pytest.FixtureRequest, target: Target) -> Iterator[BrowserSession]:
    """One Chromium per worker and target (it pins the target's private CA); a fresh context per launch."""
    from smart_conformance.browser import BrowserSession, BrowserUnavailable

    origins = [target.fhir_base_url]
    try:  # the authorization endpoint, when discovery gives one: pinned at start instead of by a relaunch
        endpoint = request.getfixturevalue("smart_config").get("authorization_endpoint")
        if isinstance(endpoint, str):
            origins.append(endpoint)
    except (checks.CouldNotCheck, pytest.skip.Exception):
        pass
    try:
        session = BrowserSession(ca_bundle=target.tls.ca_bundle, tls_fallback=not target.tls.insecure,
                                 origins=origins)
        session.start()
    except BrowserUnavailable as exc:
        raise checks.CouldNotCheck(str(exc)) from None
    yield session
    session.close()


@pytest.fixture(scope="session")
def launcher(request: pytest.FixtureRequest, target: Target, http: RecordingClient, browser_session: BrowserSession,
             smart_config: dict[str, Any]) -> Launcher:
    """Makes SMART standalone launches against the target, driven by its login recipe."""
    from smart_conformance.launcher import Launcher

    made = Launcher(target, http, browser_session, smart_config, artifacts_dir(request.config, target.name),
                    keep_traces=bool(request.config.getoption("--keep-traces")))
    made.minimal_sign_ins = production_profile(request.config)
    return made


def production_profile(config: pytest.Config) -> bool:
    return config.getoption("smart_profile", default="default") == "production"


def max_rps(config: pytest.Config) -> float | None:
    """The request-rate cap: --max-rps, else 2 under the production profile, else none."""
    given = config.getoption("smart_max_rps", default=None)
    if given is not None and given <= 0:
        raise pytest.UsageError(f"--max-rps must be a positive number of requests a second, got {given}")
    return given if given is not None else (2.0 if production_profile(config) else None)


def artifacts_dir(config: pytest.Config, target: str) -> Path:
    """Where a launcher's screenshots and traces go: under the run's reports folder (``--smart-reports``, else
    ``reports/``): ``artifacts/<target>/<worker>/<launch>/``, so the paths printed in findings still exist after the
    run, unlike a pytest temp folder that rotates away. One folder per worker (parallel launches never share a file),
    and a new one each time this process builds a launcher again for the target (a random test order can tear a
    session fixture down and set it up again), so a later launcher never overwrites what an earlier finding cites."""
    reports = Path(config.getoption("--smart-reports") or "reports")
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    root = (reports / "artifacts" / _safe(target)).resolve()
    uses = _ARTIFACT_FOLDERS.setdefault(root / worker, 0) + 1
    _ARTIFACT_FOLDERS[root / worker] = uses
    folder = root / (worker if uses == 1 else f"{worker}-{uses}")
    shutil.rmtree(folder, ignore_errors=True)  # a previous run's screenshots must not pass for this run's
    folder.mkdir(parents=True, exist_ok=True)
    return folder


_ARTIFACT_FOLDERS: dict[Path, int] = {}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "target"


@pytest.fixture(scope="session")
def launch(launcher: Launcher) -> LaunchResult:
    """The primary member's full-scope launch, shared by every check that only needs a token from it: a read-only
    handle, checked before each test uses it and renewed once if the server ended it (Launcher.shared). It reads as
    the LaunchResult it stands for."""
    return cast("LaunchResult", launcher.shared_launch())


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
    if production_profile(config):
        from smart_conformance.testplan import production_skip

        with_bulk = bool(config.getoption("smart_with_bulk", default=False))
        for item in suite_items:
            why = production_skip(item, with_bulk=with_bulk)
            if why:
                item.add_marker(pytest.mark.skip(reason=why))
    last = [item for item in items if item.get_closest_marker("reads_run") is not None]
    if last:  # after every other check, so that they read the whole run (a stable sort: the order stays otherwise)
        late = {id(item) for item in last}
        items[:] = [item for item in items if id(item) not in late] + last
    if _state(config).shard is not None:  # --shard i/n: the other jobs' targets are theirs
        mine = set(target_names(config))
        other = [item for item in suite_items if _target_param(item) not in mine]
        if other:
            config.hook.pytest_deselected(items=other)
            dropped = {id(item) for item in other}
            items[:] = [item for item in items if id(item) not in dropped]


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
    with checks.citing(*cited_ids(item)), refusals.in_check(item.name), collecting(evidence):
        yield



_FIXTURE_EVIDENCE: dict[Any, Evidence] = {}  # per shared fixture definition: what its current value's setup saw


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Iterator[None]:
    """A shared fixture's exchanges (discovery, the shared launch, a token exchange...) go to a bundle of its own, not
    to whichever test asked first; every test that uses the fixture inherits the bundle (see pytest_runtest_call)."""
    outer = current_evidence()
    if fixturedef.scope == "function" or outer is None:
        yield
        return
    bundle = Evidence()
    _FIXTURE_EVIDENCE[fixturedef] = bundle
    with collecting(bundle):
        yield
    outer.inherit(bundle)  # the test (or fixture) that asked for it now, also when asked with getfixturevalue


def _fixture_bundles(item: pytest.Item) -> list[Evidence]:
    """The bundles of the shared fixtures the item declares (directly or through other fixtures)."""
    info = getattr(item, "_fixtureinfo", None)
    found: list[Evidence] = []
    for name in getattr(item, "fixturenames", ()):
        defs = info.name2fixturedefs.get(name) if info is not None else None
        bundle = _FIXTURE_EVIDENCE.get(defs[-1]) if defs else None
        if bundle is not None:
            found.append(bundle)
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if _is_suite_item(item):
        from smart_conformance.report import allure_labels

        evidence = item.stash.get(_EVIDENCE_KEY, None)
        if evidence is not None:
            evidence.inherit(*_fixture_bundles(item))
        allure_labels.label_test(item, _target_param(item), area_of(item), check_name(item), cited_ids(item))
    outcome = yield
    if _is_suite_item(item):
        from smart_conformance.report import allure_labels

        failure = outcome.excinfo[1] if outcome.excinfo else None
        allure_labels.attach_evidence(item.stash.get(_EVIDENCE_KEY, Evidence()), failure)
        if isinstance(failure, checks.ConformanceFailures):
            allure_labels.attach_findings(failure.findings)


_TALLIES = pytest.StashKey[dict[str, dict[str, int]]]()


class TallyCollector:
    """What a process counted while a test phase ran (sign-ins, rate limits) travels on the phase's report, as the
    results do: the one way counts cross from an xdist worker. The controller sums them per target."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        config.stash[_TALLIES] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
        outcome = yield
        counts = tally.drain()
        if counts:
            outcome.get_result().smart_tally = counts

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        counts = getattr(report, "smart_tally", None)
        if isinstance(counts, dict) and not hasattr(self.config, "workerinput"):
            tally.merge(self.config.stash[_TALLIES], counts)


def tallies(config: pytest.Config) -> dict[str, dict[str, int]]:
    """Per target, the counts of the whole run (on the controller: every worker's)."""
    return {name: dict(row) for name, row in config.stash.get(_TALLIES, {}).items()}


def _target_param(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    return str(callspec.params.get("target", "")) if callspec else ""


def attestation_files(config: pytest.Config) -> dict[str, Path | None]:
    """Per target, its attestation file. The embedded reference's Target only exists in the processes that ran its
    tests (it needs the server's env), so the controller reads the path from the raw reference target YAML."""
    state = _state(config)
    if state.embedded:
        from smart_conformance.report.attestations import reference_attestations_path

        return {REFERENCE_NAME: reference_attestations_path()}
    return {name: t.attestations for name, t in state.targets.items()}
