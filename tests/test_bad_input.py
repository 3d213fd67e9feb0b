"""Every class of bad input gets one clear verdict: a configuration error before the run, *broken* when the harness could
not check (with what to change), *failed* when the target broke a requirement. Never a traceback, never INTERNALERROR.

Already proven in tests/test_cli.py and not repeated here: a YAML syntax error and a missing environment variable (exit 2,
one line), connection refused (every check broken, "target '…' is unreachable: … refused the connection"), and a
sign-in page whose selectors changed (broken, naming the login step, the selector and the screenshot).

The bad servers of tests/bad_servers.py are all targets of one `smart-conformance run --suite discovery`, so the module
pays for one pytest start; the slowest of them, the server that never answers, is cut by the harness's own 10 s
reachability probe (a target file cannot shorten it today).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import bad_servers
from tests.bad_servers import TestPki, resetting, serving
from tests.suite_runner import run_suites

ENV = {"BAD_INPUT_SECRET": "bad-input-secret-7", "BAD_INPUT_PASSWORD": "bad-input-password-7"}

TARGET = """
name: {name}
fhir_base_url: {url}
{tls}
client:
  client_id: app
  client_secret: ${{BAD_INPUT_SECRET}}
  redirect_uri: http://127.0.0.1:8765/callback
members:
  primary:
    username: member
    password: ${{BAD_INPUT_PASSWORD}}
    patient_id: "1"
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smart_conformance.cli", *args], check=False, capture_output=True,
                          text=True, env={**os.environ, **ENV}, timeout=300)


# --- configuration: refused before anything runs ------------------------------------------------------------------

@pytest.mark.parametrize("change, key, says", [
    ({"login": {"step_timout_ms": 100, "steps": [{"click": "button"}]}}, "login.step_timout_ms",
     "did you mean 'step_timeout_ms'"),
    ({"smart_version": "3"}, "smart_version", "Fix:"),
    ({"members": {"primary": {"username": "member", "password": "${BAD_INPUT_PASSWORD}"}}}, "members.primary",
     "patient_id"),
], ids=["unknown-key", "bad-value", "missing-key"])
def test_schema_violation_is_one_line_naming_file_key_and_fix(tmp_path: Path, change: dict[str, Any], key: str,
                                                              says: str) -> None:
    import yaml

    doc = yaml.safe_load(TARGET.format(name="schema", url="https://127.0.0.1:1/fhir", tls=""))
    doc.update(change)
    target = tmp_path / "schema.yaml"
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = cli("run", "--target", str(target), "--suite", "discovery", "--reports", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "schema.yaml" in proc.stderr and key in proc.stderr and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "r" / "summary.json").exists()


# --- bad servers: one run, every class a target -------------------------------------------------------------------

@dataclass(frozen=True)
class BadRun:
    returncode: int
    output: str
    summary: dict[str, Any]
    files: dict[str, Path]

    def totals(self, name: str) -> dict[str, int]:
        return self.summary["targets"][name]["totals"]

    def findings(self, name: str, outcome: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.summary["targets"][name]["findings"] if outcome in (None, f["outcome"])]


Answer = Callable[[Any], None]
TLS_ANSWERS: dict[str, Answer] = {
    "html-not-json": bad_servers.html_page,
    "broken-json": bad_servers.broken_json,
    "500-everywhere": bad_servers.server_error,
    "redirect-loop": bad_servers.redirect_loop,
    "50mb-declared": bad_servers.huge_body,
    "50mb-streamed": bad_servers.huge_undeclared_body,
    "never-answers": bad_servers.never_answers,
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BadRun]:
    folder = tmp_path_factory.mktemp("bad-input")
    pki = TestPki(folder / "pki")
    trusted = f"tls:\n  ca_bundle: {pki.ca_path}"
    files: dict[str, Path] = {}

    def target(name: str, port: int | None, tls: str = trusted, host: str = "127.0.0.1") -> None:
        url = f"https://{host}:{port}/fhir" if port else f"https://{host}/fhir"
        files[name] = folder / f"{name}.yaml"
        files[name].write_text(TARGET.format(name=name, url=url, tls=tls))

    with ExitStack() as servers:
        target("dns-failure", None, host="payer.invalid")  # .invalid never resolves (RFC 6761)
        target("private-ca-not-configured", servers.enter_context(serving(bad_servers.json_ok, pki.context())), tls="")
        target("plain-http-on-https-port", servers.enter_context(serving(bad_servers.json_ok)))
        target("tls-reset", servers.enter_context(resetting()))
        for name, answer in TLS_ANSWERS.items():
            target(name, servers.enter_context(serving(answer, pki.context())))
        args = ["run", "--suite", "discovery", "--reports", str(folder / "r")]
        for file in files.values():
            args += ["--target", str(file)]
        proc = cli(*args)
    summary = json.loads((folder / "r" / "summary.json").read_text())
    yield BadRun(proc.returncode, proc.stdout + proc.stderr, summary, files)


def test_run_ends_with_verdicts_not_tracebacks(bad_run: BadRun) -> None:
    assert set(bad_run.summary["targets"]) == set(bad_run.files), bad_run.output[-3000:]
    assert bad_run.returncode == 1, bad_run.output[-3000:]  # some targets broke requirements: failed wins
    for marker in ("Traceback", "INTERNALERROR", "Error in ", "Exception in thread"):
        assert marker not in bad_run.output, bad_run.output[-3000:]
    for name in bad_run.files:
        assert bad_run.totals(name)["passed"] == 0, name  # nothing passes by default on a server that says nothing


# Could not check: the harness never got an answer to judge. Every check broken, with one message saying what to do.
@pytest.mark.parametrize("name, says", [
    ("dns-failure", ("is unreachable: the host name 'payer.invalid' does not resolve", "fhir_base_url")),
    ("private-ca-not-configured", ("TLS certificate this machine does not trust", "set tls.ca_bundle in",
                                   "private-ca-not-configured.yaml")),
    ("plain-http-on-https-port", ("failed the TLS handshake", "serves HTTPS (not plain HTTP)")),
    ("tls-reset", ("failed the TLS handshake", "Connection reset")),
    ("never-answers", ("accepted the connection but sent no answer", "within 10.0 s")),
    ("50mb-declared", ("declares 52428800 bytes", "more than the 32 MB the harness reads")),
    ("50mb-streamed", ("is larger than the 32 MB the harness reads",)),
])
def test_harness_could_not_check(bad_run: BadRun, name: str, says: tuple[str, ...]) -> None:
    totals = bad_run.totals(name)
    assert totals["broken"] > 0 and totals["failed"] == totals["passed"] == totals["warning"] == 0, totals
    messages = {f["message"] for f in bad_run.findings(name)}
    assert len(messages) == 1, messages
    message = messages.pop()
    assert message.startswith(f"could not check: CouldNotCheck: target '{name}' "), message
    assert all(part in message for part in says), message
    assert "\n" not in message and "unreachable: cannot connect" not in message


# The target is at fault: its discovery document is no document. The SHALL it breaks fails with what came back; what
# builds on discovery is broken, each with one line saying why.
@pytest.mark.parametrize("name, actual", [
    ("html-not-json", "body is not JSON"),
    ("broken-json", "body is not JSON"),
    ("500-everywhere", "HTTP 500"),
    ("redirect-loop", "HTTP 302"),
])
def test_target_at_fault_fails_the_requirement_it_breaks(bad_run: BadRun, name: str, actual: str) -> None:
    failed = {f["check"]: f["message"] for f in bad_run.findings(name, "failed")}
    assert "test_smart_configuration_served" in failed, failed
    served = failed["test_smart_configuration_served"]
    assert "SMART-DISC-01" in served and actual in served and "/.well-known/smart-configuration" in served, served
    assert "test_metadata_readable_without_token" in failed
    for finding in bad_run.findings(name, "broken"):
        assert finding["message"].startswith("could not check: CouldNotCheck: "), finding
        assert "\n" not in finding["message"], finding


# --- a malformed id_token: the one bad answer that needs a whole launch first ----------------------------------------

def test_malformed_id_token_fails_oidc_01(tmp_path: Path) -> None:
    """The embedded reference, patched by tests/bad_servers.py (loaded as a plugin) to answer ``not-a-jwt``."""
    run = run_suites(["tokens/test_id_token.py"], tmp_path, extra=(
        "-p", "tests.bad_servers", "-k", "test_id_token_issued or test_id_token_signature"))
    assert "Traceback" not in run.output and "INTERNALERROR" not in run.output, run.output
    assert run.outcomes() == {"test_id_token_issued": {"failed"}, "test_id_token_signature": {"failed"}}, run.output
    for check in ("test_id_token_issued", "test_id_token_signature"):
        (message,) = run.messages("reference", check)
        assert "OIDC-01" in message and "JWT has 1 dot-separated part(s)" in message, message
