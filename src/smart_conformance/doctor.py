"""``smart-conformance doctor``: is this machine (and this target file) ready for a run?

Each check says what it found; each problem says how to fix it. Problems make the exit code 1; notes (an optional
part missing, e.g. the Allure CLI that only the HTML report needs) do not. Nothing here may end in a traceback: an
unexpected error becomes the finding of the check that met it.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

Status = Literal["ok", "note", "problem"]
_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(:-[^}]*)?\}")


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str
    fix: str = ""

    def render(self) -> str:
        mark = {"ok": "ok     ", "note": "note   ", "problem": "PROBLEM"}[self.status]
        text = f"{mark} {self.check}: {self.detail}"
        return text + (f"\n        fix: {self.fix}" if self.fix else "")


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).strip().split("\n")[0]


def _split_fix(text: str) -> tuple[str, str]:
    problem, _, fix = text.partition(" Fix: ")
    return problem.rstrip("."), fix


# --- environment ----------------------------------------------------------------------------------------------------

def check_browser() -> list[Finding]:
    """A Chromium the harness finds (browser module's own discovery) and that starts and renders a page."""
    from smart_conformance.browser import (
        BrowserSession,
        BrowserUnavailable,
        find_chromium,
        remote_browser,
    )

    try:
        remote = remote_browser()
        if remote is not None:
            where = remote.describe()
        else:
            choice = find_chromium()
            where = f"{choice.kind} Chromium {choice.path or '(Playwright default location)'}"
    except BrowserUnavailable as exc:
        return [Finding("browser", "problem", *_split_fix(str(exc)))]
    try:
        with BrowserSession() as session:
            page = session.browser.new_page()
            page.set_content("<title>doctor</title>")
            page.close()
    except BrowserUnavailable as exc:
        return [Finding("browser", "problem", *_split_fix(str(exc)))]
    except Exception as exc:  # noqa: BLE001 - Playwright's own launch errors: missing libraries, sandbox, ...
        return [Finding("browser", "problem", f"{where} found but did not start: {_first_line(exc)}",
                        "run scripts/bootstrap; on Linux install the browser's libraries "
                        "('python -m playwright install-deps chromium' or the distribution's chromium package), or "
                        "point SMART_CONFORMANCE_CHROMIUM at a Chromium that starts")]
    return [Finding("browser", "ok", f"{where} starts headless")]


def check_allure() -> list[Finding]:
    """The Allure CLI: only the HTML report needs it, so its absence is a note."""
    from smart_conformance.report import html

    try:
        cli = html.find_allure()
    except html.AllureUnavailable as exc:
        problem, fix = _split_fix(str(exc))
        return [Finding("allure", "note", f"{problem} (only 'report' and 'run --html' need it)", fix)]
    return [Finding("allure", "ok", cli.label)]


def check_harness() -> list[Finding]:
    from smart_conformance import paths

    try:
        suites = [d.name for d in sorted(paths.suites_dir().iterdir()) if d.is_dir() and any(d.glob("test_*.py"))]
    except OSError as exc:
        return [Finding("harness", "problem", f"the suites cannot be read ({_first_line(exc)})",
                        "reinstall: scripts/bootstrap (or pip install the wheel again)")]
    return [Finding("harness", "ok", f"Python {sys.version.split()[0]}, suites: {', '.join(suites)}")]


# --- the target file ------------------------------------------------------------------------------------------------

def missing_env(file: Path, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every ``${VAR}`` the file reads that is not set and has no default: (key path, variable)."""
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return []  # the loader reports these, with the line
    found: list[tuple[str, str]] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif isinstance(value, str):
            found.extend((path, m.group(1)) for m in _ENV_REF.finditer(value)
                         if m.group(2) is None and m.group(1) not in env)

    walk(raw, "")
    return found


def check_target(file: Path, env: Mapping[str, str]) -> tuple[list[Finding], Any]:
    """The target file loads and validates; returns the findings and the Target (None when it does not load)."""
    from smart_conformance.config import ConfigError, load_target

    missing = missing_env(file, env)
    if missing:
        names = list(dict.fromkeys(name for _, name in missing))
        detail = "; ".join(f"{key} reads ${{{name}}}" for key, name in missing)
        fix = "export " + " ".join(f"{n}=..." for n in names) + " (in CI: map them from the CI secrets)"
        return [Finding("config", "problem", f"{file}: environment variables not set: {', '.join(names)} ({detail})",
                        fix)], None
    try:
        target = load_target(file, env)
    except ConfigError as exc:
        return [Finding("config", "problem", f"{exc.file}: {exc.key or '(top level)'}: {exc.problem}", exc.fix)], None
    findings = [Finding("config", "ok", f"{file} loads: target '{target.name}', FHIR base {target.fhir_base_url}")]
    findings += _check_recipe(target)
    if target.attestations is not None and not target.attestations.is_file():
        findings.append(Finding("config", "note", f"attestations: {target.attestations} does not exist",
                                "create it (schema fixtures/schemas/attestations.schema.json) or remove the key"))
    return findings, target


def _check_recipe(target: Any) -> list[Finding]:
    from smart_conformance.browser import RecipeError, parse_recipe

    if target.login is None:
        return [Finding("login recipe", "note", "no login section: the launch, tokens, scopes and payer_data checks "
                        "will report 'could not check'",
                        "record the sign-in with 'python -m playwright codegen --target python -o signin.py "
                        "AUTHORIZE_URL' and convert it: smart-conformance init-target ... --from-codegen signin.py")]
    try:
        recipe = parse_recipe(target.login)
    except RecipeError as exc:
        return [Finding("login recipe", "problem", *_split_fix(str(exc)))]
    missing = [s for s in ("approve", "deny", "untick") if s not in recipe.consent]
    if missing and recipe.consent:
        return [Finding("login recipe", "note", f"{len(recipe.steps)} sign-in steps; no consent "
                        f"{', '.join(missing)} steps (checks that need them report 'could not check')",
                        "add login.consent." + missing[0] + " (README: The login recipe)")]
    return [Finding("login recipe", "ok", f"{len(recipe.steps)} sign-in steps, consent: "
                    f"{', '.join(recipe.consent) or 'none (no consent page)'}")]


def check_ca_bundle(target: Any) -> list[Finding]:
    ca = target.tls.ca_bundle
    if ca is None:
        return [Finding("ca bundle", "ok", "none configured: the system trust store is used")]
    try:
        text = Path(ca).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return [Finding("ca bundle", "problem", f"{ca}: cannot read ({exc.strerror})", "fix tls.ca_bundle's path")]
    count = text.count("-----BEGIN CERTIFICATE-----")
    if not count:
        return [Finding("ca bundle", "problem", f"{ca} holds no PEM certificate",
                        "tls.ca_bundle must be a PEM file of CA certificates ('-----BEGIN CERTIFICATE-----')")]
    try:
        ssl.create_default_context(cafile=str(ca))
    except ssl.SSLError as exc:
        return [Finding("ca bundle", "problem", f"{ca}: OpenSSL cannot load it ({_first_line(exc)})",
                        "export the CA chain again as PEM")]
    return [Finding("ca bundle", "ok", f"{ca}: {count} certificate(s)")]


def _handshake(url: str, context: ssl.SSLContext, timeout: float) -> str | None:
    """None when a TLS handshake with the URL's host verifies; else why not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                context.wrap_socket(sock, server_hostname=host):
            return None
    except ssl.SSLCertVerificationError as exc:
        return f"certificate not trusted ({exc.verify_message or exc.reason})"
    except (ssl.SSLError, OSError) as exc:
        return _first_line(exc)


def check_reachability(target: Any, timeout: float = 10.0) -> list[Finding]:
    """The FHIR base and discovery answer, and every https origin they name verifies with the configured trust."""
    import httpx

    from smart_conformance.http import ssl_context
    from smart_conformance.smart import discovery

    try:
        context: Any = False if target.tls.insecure else ssl_context(target.tls.ca_bundle, target.tls.client_cert,
                                                                      target.tls.client_key)
    except (ssl.SSLError, OSError) as exc:
        return [Finding("tls", "problem", f"the TLS settings do not load ({_first_line(exc)})",
                        "check tls.ca_bundle, tls.client_cert and tls.client_key")]
    trust = f"the CA bundle {target.tls.ca_bundle}" if target.tls.ca_bundle else "the system trust store"
    findings: list[Finding] = []
    with httpx.Client(verify=context, timeout=timeout, follow_redirects=False) as client:
        def get(url: str, accept: str) -> Any:
            try:
                return client.get(url, headers={"Accept": accept})
            except httpx.HTTPError as exc:
                return exc

        metadata_url = discovery.metadata_url(target.fhir_base_url)
        well_known_url = target.smart_configuration_url or discovery.smart_configuration_url(target.fhir_base_url)
        metadata = get(metadata_url, "application/fhir+json")
        well_known = get(well_known_url, "application/json")
    origins: dict[str, str] = {}
    for name, url, answer in (("FHIR base", metadata_url, metadata), ("discovery", well_known_url, well_known)):
        if isinstance(answer, Exception):
            findings.append(_unreachable(name, url, answer, trust, target))
            continue
        origins.setdefault(_origin(url), url)
        findings.append(Finding(name, "ok", f"GET {url} answered HTTP {answer.status_code}"))
    endpoints = _endpoints(metadata, well_known)
    if endpoints is None and not any(f.status == "problem" for f in findings):
        findings.append(Finding("discovery", "problem", f"no SMART endpoints: {well_known_url} gave no JSON object and "
                                "the CapabilityStatement has no oauth-uris",
                                "check fhir_base_url, or set discovery.smart_configuration_url"))
    for key in discovery.URL_FIELDS:  # the endpoints a run sends requests to; nothing else the document names
        url = (endpoints or {}).get(key)
        if isinstance(url, str) and url.startswith("https://"):
            origins.setdefault(_origin(url), f"{key} {url}")
    if target.tls.insecure:
        findings.append(Finding("tls", "note", "tls.insecure is set: certificates are not verified",
                                "remove tls.insecure for a certification run"))
        return findings
    for origin, why in origins.items():
        if not origin.startswith("https://"):
            continue
        problem = _handshake(origin, context, timeout)
        if problem is None:
            findings.append(Finding("tls", "ok", f"{origin} verifies with {trust}"))
        else:
            findings.append(Finding("tls", "problem", f"{origin} ({why}): {problem}", _tls_fix(target)))
    return findings


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _endpoints(metadata: Any, well_known: Any) -> dict[str, Any] | None:
    import httpx

    from smart_conformance.smart import discovery

    def parsed(answer: Any) -> Any:
        if not isinstance(answer, httpx.Response) or answer.status_code != 200:
            return None
        try:
            return answer.json()
        except ValueError:
            return None

    doc = parsed(well_known)
    if isinstance(doc, dict):
        return doc
    statement = parsed(metadata)
    return discovery.config_from_statement(statement, str(metadata.request.url)) if statement is not None else None


def _tls_fix(target: Any) -> str:
    if target.tls.ca_bundle:
        return (f"tls.ca_bundle ({target.tls.ca_bundle}) must hold the CA that issued this server's certificate; "
                "ask the payer for the staging CA chain (PEM)")
    return "set tls.ca_bundle to the PEM of the CA that issued the server's certificate (a private staging CA)"


def _unreachable(name: str, url: str, exc: Exception, trust: str, target: Any) -> Finding:
    reason = _first_line(exc)
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return Finding(name, "problem", f"{url}: certificate not trusted by {trust} "
                           f"({cause.verify_message or cause.reason})", _tls_fix(target))
        cause = cause.__cause__ or cause.__context__
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return Finding(name, "problem", f"{url}: no answer within the timeout",
                       "check that the server is up and that no firewall or proxy drops the connection")
    return Finding(name, "problem", f"{url}: cannot connect ({reason})",
                   "check fhir_base_url, DNS, and any VPN or proxy (HTTPS_PROXY) needed to reach the payer")


# --- running it -----------------------------------------------------------------------------------------------------

def _guarded(name: str, check: Callable[[], list[Finding]]) -> list[Finding]:
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - the promise: no traceback, whatever the input
        return [Finding(name, "problem", f"the check itself failed: {type(exc).__name__}: {_first_line(exc)}",
                        "report this with the command line; the other checks are unaffected")]


def diagnose(target_file: Path | None = None, env: Mapping[str, str] | None = None,
             environment: bool = True) -> list[Finding]:
    """All checks; ``environment=False`` leaves out the browser and the Allure CLI (the target file's checks only)."""
    env = os.environ if env is None else env
    findings = _guarded("harness", check_harness)
    if environment:
        findings += _guarded("browser", check_browser)
        findings += _guarded("allure", check_allure)
    if target_file is None:
        return findings
    loaded: list[Any] = []

    def config() -> list[Finding]:
        found, target = check_target(target_file, env)
        loaded.append(target)
        return found

    findings += _guarded("config", config)
    target = loaded[0] if loaded else None
    if target is not None:
        findings += _guarded("ca bundle", lambda: check_ca_bundle(target))
        findings += _guarded("reachability", lambda: check_reachability(target))
    return findings


def main(target_file: str | None, *, environment: bool = True) -> int:
    findings = diagnose(Path(target_file) if target_file else None, environment=environment)
    for finding in findings:
        print(finding.render())
    problems = sum(f.status == "problem" for f in findings)
    notes = sum(f.status == "note" for f in findings)
    print(f"\n{problems} problem(s), {notes} note(s)" + ("" if problems else ": ready to run"))
    return 1 if problems else 0
