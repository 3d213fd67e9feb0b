"""Evidence that holds up (issue 10, classes 13 and 14).

- The curl printed under "Reproduce with" runs as printed: ``"$TOKEN"`` expands, and a private-CA target is trusted
  with ``--cacert``.
- An exchange a shared (session) fixture made is evidence for every check that consumes the fixture, not only for the
  first one that happened to ask.
- Screenshots and traces live under the run's reports folder, not in a pytest temp folder that rotates away.
- junit.xml counts what the exit code counts: a SHOULD warning is not a JUnit failure (unless ``--smart-strict``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from smart_conformance.http import RecordingClient, ssl_context
from smart_conformance.report.allure_labels import CATEGORIES
from tests.suite_runner import run_suites
from tests.tls_servers import LOCAL, Pki, wait_listening

TOKEN = "evidence-test-token-1"


class _BearerOnly(BaseHTTPRequestHandler):
    """200 only for the one bearer token, 401 otherwise: proves the curl sent the token it was given."""

    def do_GET(self) -> None:
        ok = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        body = b'{"resourceType": "Patient", "id": "1"}' if ok else b""
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def private_ca_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An https server on 127.0.0.1 whose certificate only a private CA vouches for."""
    pki = Pki(tmp_path / "pki")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*pki.issue(LOCAL))
    server = ThreadingHTTPServer((LOCAL, 0), _BearerOnly)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        wait_listening(server.server_address[1])
        yield server.server_address[1], pki.ca_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def recorded_curl(port: int, ca: Path) -> str:
    with RecordingClient(verify=ssl_context(ca), cacert=ca) as http:
        response = http.get(f"https://{LOCAL}:{port}/fhir/Patient/1", headers={"Authorization": f"Bearer {TOKEN}",
                                                                             "Accept": "application/fhir+json"})
        assert response.status_code == 200
        exchange = http.exchange_for(response)
    assert exchange is not None
    return exchange.to_curl()


def test_curl_argv_keeps_the_token_variable_and_trusts_the_private_ca(tmp_path: Path) -> None:
    with private_ca_server(tmp_path) as (port, ca):
        curl = recorded_curl(port, ca)
    assert TOKEN not in curl
    assert '"Authorization: Bearer $TOKEN"' in curl  # double quotes: the shell expands $TOKEN
    argv = shlex.split(curl)
    assert argv[:4] == ["curl", "-i", "-X", "GET"]
    assert argv[argv.index("--cacert") + 1] == str(ca)
    assert argv[argv.index("Authorization: Bearer $TOKEN") - 1] == "-H"
    assert argv[-1] == f"https://{LOCAL}:{port}/fhir/Patient/1"


def test_basic_credentials_are_a_variable_too() -> None:
    import httpx

    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    with RecordingClient(transport=transport) as http:
        response = http.post("https://as.example/token", data={"grant_type": "client_credentials"},
                             headers={"Authorization": "Basic YXBwOnNlY3JldA=="})
        curl = http.exchange_for(response).to_curl()  # type: ignore[union-attr]
    assert '"Authorization: Basic $CLIENT_CREDENTIALS"' in curl and "--cacert" not in curl
    assert "Authorization: Basic $CLIENT_CREDENTIALS" in shlex.split(curl)


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs curl and bash")
def test_printed_curl_runs_as_printed(tmp_path: Path) -> None:
    """Pasted into a shell with TOKEN exported, the command gets the same 200; with another token, a 401."""
    with private_ca_server(tmp_path) as (port, ca):
        curl = recorded_curl(port, ca)
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}

        def shell(token: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["bash", "-c", curl], check=False, env={**env, "TOKEN": token}, capture_output=True,
                                  text=True, timeout=30)

        ok, wrong = shell(TOKEN), shell("not-it")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("HTTP/1.0 200") and '"resourceType": "Patient"' in ok.stdout, ok.stdout
    assert wrong.stdout.startswith("HTTP/1.0 401"), wrong.stdout


# --------------------------------------------------------------------------------------------------------------------
# Against the reference server: session fixtures' evidence, artifact paths, JUnit counts
# --------------------------------------------------------------------------------------------------------------------


def allure_results(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(f.read_text()) for f in (folder / "allure-results").glob("*-result.json")]


def attached_exchanges(folder: Path, result: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for attachment in result.get("attachments", []):
        if attachment["name"].startswith("HTTP exchanges"):
            found += json.loads((folder / "allure-results" / attachment["source"]).read_text())
    return found


def test_session_fixture_exchanges_are_evidence_for_every_consumer(tmp_path: Path) -> None:
    """With pkce-plain-advertised on, every discovery check that judges the smart-configuration document carries
    the one fetch of it (same exchange, same timestamp), and the failing check names it, wherever it runs."""
    run = run_suites(["discovery/test_smart_configuration.py"], tmp_path, faults=("pkce-plain-advertised",))
    assert run.checks_with("failed") == {"test_pkce_s256_only"}, run.output
    (message,) = run.messages("reference", "test_pkce_s256_only")
    assert "Evidence: GET https://" in message and "/.well-known/smart-configuration -> 200" in message, message
    fetches: dict[str, set[str]] = {}
    for result in allure_results(tmp_path):
        for exchange in attached_exchanges(tmp_path, result):
            request = exchange["request"]
            if request["url"].endswith("/.well-known/smart-configuration") and \
                    dict(request["headers"]).get("Accept") == "application/json":
                fetches.setdefault(exchange["started_at"], set()).add(result["name"])
    shared = max(fetches.values(), key=len)
    assert len(shared) >= 5, fetches  # the same fetch is in the evidence of many checks, not of the first only
    assert any("S256" in name or "PKCE" in name or "pkce" in name.lower() for name in shared), shared


def test_screenshots_and_traces_stay_under_the_reports_folder(tmp_path: Path) -> None:
    """Artifacts live in <reports>/artifacts/<target>/<worker>/<launch>/ and the shared launch's screenshots are
    evidence for every check that used it, not only for the one that made it."""
    reports = tmp_path / "reports"
    run = run_suites(["launch/test_standalone_launch.py"], reports, extra=("--keep-traces",))
    assert run.totals().get("passed", 0) >= 3, run.output
    root = (reports / "artifacts" / "reference").resolve()
    shots = list(root.rglob("*.png"))
    traces = list(root.rglob("*-trace.zip"))
    assert shots and traces, sorted(str(p) for p in (reports / "artifacts").rglob("*"))
    assert all(p.parent.parent.parent == root for p in shots + traces), shots + traces  # <worker>/<launch>/file
    text = json.dumps(run.summary) + "".join(f.read_text() for f in (reports / "allure-results").glob("*.json"))
    assert "pytest-of-" not in text and "/launches-" not in text
    users: dict[str, int] = {}
    for result in allure_results(reports):
        for name in {a["name"].split(":")[0] for a in result.get("attachments", []) if a["name"].startswith("launch-")}:
            users[name] = users.get(name, 0) + 1
    assert max(users.values()) >= 3, users  # the shared launch is attached to each of its users


def junit_counts(file: Path) -> dict[str, int]:
    root = ET.parse(file).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    return {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}


def test_junit_failures_equal_the_summarys_failed_count(tmp_path: Path) -> None:
    """tls-cbc-only breaks a SHALL (TLS-04), hsts-missing a SHOULD (TLS-06): one failure, one warning. JUnit must
    report one failure, and the warning as a passed test case that says it is a warning."""
    junit = tmp_path / "junit.xml"
    run = run_suites(["tls"], tmp_path, faults=("tls-cbc-only", "hsts-missing"), extra=(f"--junitxml={junit}",))
    totals = run.totals()
    assert totals["failed"] >= 1 and totals["warning"] >= 1 and totals["broken"] == 0, (totals, run.output)
    counts = junit_counts(junit)
    assert counts["failures"] + counts["errors"] == totals["failed"], (counts, totals)
    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    warned = [name for name, case in cases.items()
              if any(p.get("name") == "smart_outcome" and p.get("value") == "warning" for p in case.iter("property"))]
    assert len(warned) == totals["warning"], warned
    for name in warned:
        case = cases[name]
        assert case.find("failure") is None and case.find("error") is None and case.find("skipped") is None
        texts = [p.get("value") or "" for p in case.iter("property") if p.get("name") == "smart_warning"]
        assert texts and texts[0].startswith("[SHOULD] TLS-06"), texts
    assert run.returncode == 1  # pytest's own exit code still fails on the SHALL failure
    # Allure keeps the real outcome: the warning is "failed" there and lands in the SHOULD category, not the SHALL one.
    shall, should = (c["messageRegex"] for c in CATEGORIES[:2])
    statuses = sorted((r["status"], bool(re.fullmatch(should, m)), bool(re.fullmatch(shall, m)))
                      for r in allure_results(tmp_path) if r["status"] == "failed"
                      for m in [r.get("statusDetails", {}).get("message", "")])
    assert statuses == sorted([("failed", False, True)] * totals["failed"]
                              + [("failed", True, False)] * totals["warning"]), statuses


def test_strict_mode_keeps_warnings_as_junit_failures(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    run = run_suites(["tls/test_transport_security.py"], tmp_path, faults=("tls13-disabled",),
                     extra=(f"--junitxml={junit}", "--smart-strict", "-k", "tls_1_3_offered or tls_1_2_accepted"))
    totals = run.totals()
    assert totals["warning"] == 1 and totals["failed"] == 0, (totals, run.output)
    assert junit_counts(junit)["failures"] == 1
    assert run.returncode == 1 and run.summary["exit_code"] == 1


def test_screenshot_path_in_a_message_exists_after_the_run(tmp_path: Path) -> None:
    """A recipe step that no longer matches names its screenshot; that file is under the reports folder and still
    there when the run is over (a pytest temp folder would have rotated away)."""
    from smart_conformance import paths
    from smart_conformance.reference.server import ReferenceServer

    target = tmp_path / "changed-page.yaml"
    target.write_text(paths.reference_target().read_text().replace('"#username"', '"#user-name"'))
    reports = tmp_path / "reports"
    with ReferenceServer() as server:
        run = run_suites(["launch/test_standalone_launch.py"], reports, targets=(target,), env=server.target_env(),
                         extra=("-k", "test_standalone_launch_succeeds"))
    (message,) = run.messages("reference", "test_standalone_launch_succeeds")
    found = re.search(r"screenshot: (\S+\.png)", message)
    assert found, message
    shot = Path(found.group(1))
    assert shot.is_file() and shot.is_relative_to((reports / "artifacts" / "reference").resolve()), shot


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs curl and bash")
def test_curl_in_a_reference_finding_runs_against_the_reference(tmp_path: Path) -> None:
    """The curl under a real finding (pkce-plain-advertised) trusts the reference's private CA and gets its 200."""
    from smart_conformance import paths
    from smart_conformance.reference.server import ReferenceServer

    with ReferenceServer(faults=["pkce-plain-advertised"]) as server:
        run = run_suites(["discovery/test_smart_configuration.py"], tmp_path, targets=(paths.reference_target(),),
                         env=server.target_env(), extra=("-k", "test_pkce_s256_only"))
        (message,) = run.messages("reference", "test_pkce_s256_only")
        curl = message.split("Reproduce with:", 1)[1].strip().splitlines()[0]
        assert f"--cacert {server.ca_path}" in curl, curl
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        done = subprocess.run(["bash", "-c", curl], check=False, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/") and " 200" in done.stdout.splitlines()[0], done.stdout[:300]
    assert '"plain"' in done.stdout  # the reproduction shows the very defect the finding names
