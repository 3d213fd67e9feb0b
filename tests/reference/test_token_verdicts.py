"""The tokens suite's verdicts hold on servers we did not write (issue 10, classes 4a, 4b, 7, 9, 10, 16a).

Each test reproduces one mistake against the reference server with the variant (a legitimate behaviour) or fault (a
real defect) that exposed it, and runs the real suite module the way a user does.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smart_conformance.checks import CouldNotCheck
from smart_conformance.config import ConfigError, load_target
from smart_conformance.http import RecordingClient
from smart_conformance.reference.variants import (
    ONLY_REFRESH_TOKENS_REVOCABLE,
    REFUSALS_AS_404,
    REVOKE_ALL_ON_REFRESH_REVOCATION,
    TOKEN_401_WITHOUT_WWW_AUTHENTICATE,
)
from smart_conformance.revocation import watch
from smart_conformance.smart.idtoken import fhir_user_reference
from tests.suite_runner import SuiteRun, run_suites

REVOCATION = "tokens/test_revocation_introspection.py"


def _target_file(folder: Path, fhir_base: str, fhir_user: str | None = None) -> Path:
    """A minimal target file (secrets from the environment, as users write them); nothing in it reaches a network."""
    member = f"\n    fhir_user: {fhir_user}" if fhir_user else ""
    file = folder / "payer.yaml"
    file.write_text(f"""name: payer
fhir_base_url: {fhir_base}
client:
  client_id: app
  client_secret: ${{PAYER_CLIENT_SECRET}}
  redirect_uri: http://127.0.0.1:8765/callback
members:
  primary:
    username: alice
    password: ${{PAYER_MEMBER_PASSWORD}}
    patient_id: pat-alice{member}
""", encoding="utf-8")
    return file


ENV = {"PAYER_CLIENT_SECRET": "s3cret-value", "PAYER_MEMBER_PASSWORD": "pa55word-value"}


def _finding(run: SuiteRun, check: str) -> dict:
    found = [f for f in run.summary["targets"]["reference"]["findings"] if f["check"] == check]
    assert found, f"{check} has no finding\n{run.output}"
    return found[0]


def _outcomes(run: SuiteRun) -> dict[str, set[str]]:
    """check → its outcomes (one per parameter); passed checks appear in the summary's totals only, so they are read
    from the Allure results."""
    out: dict[str, set[str]] = {}
    for file in (run.reports / "allure-results").glob("*-result.json"):
        result = json.loads(file.read_text(encoding="utf-8"))
        if result["fullName"].startswith("safety_checklist."):
            continue  # the checklist page Allure shows beside the checks, not a check
        out.setdefault(result["fullName"].rsplit("#", 1)[-1], set()).add(result["status"])
    return out


def _notes(run: SuiteRun) -> str:
    return "\n".join(f.read_text(encoding="utf-8", errors="replace")
                     for f in (run.reports / "allure-results").glob("*-attachment.txt"))


# --- class 4a: WWW-Authenticate only when the client used the Authorization header -------------------------------
def test_token_401_without_challenge_for_unauthenticated_client_passes(tmp_path: Path) -> None:
    """RFC 6749 §5.2: a 401 without WWW-Authenticate is fine when no Authorization header was sent."""
    run = run_suites(["tokens/test_token_request.py"], tmp_path, variants=(TOKEN_401_WITHOUT_WWW_AUTHENTICATE,),
                     extra=("-k", "client_authentication_required"))
    assert run.totals("reference") == {**run.totals("reference"), "passed": 2, "failed": 0, "warning": 0,
                                       "broken": 0}, run.output


# --- class 4b + positive controls: unsupported_token_type is a SHOULD finding, never a SHALL failure --------------
def test_only_refresh_tokens_revocable_is_one_should_warning(tmp_path: Path) -> None:
    run = run_suites([REVOCATION], tmp_path, variants=(ONLY_REFRESH_TOKENS_REVOCABLE,))
    assert run.checks_with("failed") == set(), run.output
    assert run.checks_with("broken") == set(), run.output
    assert run.checks_with("warning") == {"test_revoked_access_token_refused"}, run.output
    finding = _finding(run, "test_revoked_access_token_refused")
    assert "RFC7009-06" in finding["message"] and "RFC7009-01" not in finding["message"].split("\n")[0], finding
    assert "unsupported_token_type" in finding["message"]


# --- class 7: a revocation verdict needs the same request to have worked before -----------------------------------
def test_refusals_as_404_after_a_working_read_count_as_revocation(tmp_path: Path) -> None:
    """A server that hides refused resources with 404 (FHIR R4 security) still passes the revocation checks: the
    same read answered 200 before revocation, so the 404 after it is the server's decision."""
    checks = {"test_revoked_access_token_refused", "test_revoked_refresh_token_stops_refresh",
              "test_code_reuse_revokes_tokens"}
    run = run_suites([REVOCATION, "tokens/test_token_request.py"], tmp_path, variants=(REFUSALS_AS_404,),
                     extra=("-k", " or ".join(sorted(checks))))
    assert _outcomes(run) == {check: {"passed"} for check in checks}, run.output


def _everything_404(request: httpx.Request) -> httpx.Response:
    return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []})


def test_revocation_verdict_without_control_could_not_check(tmp_path: Path) -> None:
    """Against a URL that answers 404 to everything there is no positive control: could-not-check, never a pass
    ("HTTP 404: it still works" / "revoked token refused")."""
    target = load_target(_target_file(tmp_path, "https://127.0.0.1:9/fhir"), env=ENV)
    with RecordingClient(transport=httpx.MockTransport(_everything_404)) as http, \
            pytest.raises(CouldNotCheck, match="no positive control"):
        watch(http, target, "a-token-of-the-check", "a revoked access token refused")


# --- class 9: a fhirUser elsewhere is a finding, and no token goes there ------------------------------------------
@pytest.fixture
def trap() -> Iterator[tuple[str, list[bytes]]]:
    """A plain-http listener on 127.0.0.1 that records every connection made to it."""
    hits: list[bytes] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    hits.append(conn.recv(65536))
                except OSError:
                    hits.append(b"")
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", hits
    stop.set()
    thread.join(timeout=2)
    sock.close()


def test_fhir_user_on_another_origin_cannot_be_checked_and_gets_no_token(tmp_path: Path,
                                                                         trap: tuple[str, list[bytes]]) -> None:
    """SMART does not require fhirUser under the FHIR base: no finding, a could-not-check naming the origin, and no
    request (least of all the member's token) to that origin."""
    origin, hits = trap
    run = run_suites(["tokens/test_id_token.py"], tmp_path, faults=("fhiruser-other-origin",),
                     env={"SMART_REFERENCE_FHIRUSER_ORIGIN": origin},
                     extra=("-k", "fhir_user_resolves or representative"))
    assert run.checks_with("failed", "warning") == set(), run.output
    assert run.checks_with("broken") == {"test_fhir_user_resolves_to_member", "test_representative_launch"}, run.output
    message = " ".join(run.messages("reference", "test_fhir_user_resolves_to_member"))
    assert "outside the FHIR base" in message and origin in message, message
    assert hits == [], f"the harness sent {len(hits)} request(s) to the fhirUser origin {origin}: {hits[:1]!r}"


@pytest.mark.parametrize(("claim", "expected"), [
    ("Patient/123", "Patient/123"),
    ("https://payer.example/fhir/Patient/123", "Patient/123"),
    ("https://PAYER.example:443/fhir/Patient/123", "Patient/123"),
    ("http://payer.example/fhir/Patient/123", None),  # plain http: another origin
    ("https://payer.example:8443/fhir/Patient/123", None),
    ("https://elsewhere.example/fhir/Patient/123", None),
    ("https://payer.example/other/Patient/123", None),
    ("https://payer.example/fhir/../admin/Patient/1", None),
    ("//elsewhere.example/fhir/Patient/123", None),
])
def test_fhir_user_resolved_against_the_fhir_base(claim: str, expected: str | None) -> None:
    assert fhir_user_reference(claim, "https://payer.example/fhir") == expected


def test_member_fhir_user_accepts_the_absolute_url_from_the_claim(tmp_path: Path) -> None:
    absolute = _target_file(tmp_path, "https://payer.example/fhir", "https://payer.example/fhir/Patient/pat-alice")
    assert load_target(absolute, env=ENV).members["primary"].fhir_user.endswith("/fhir/Patient/pat-alice")
    elsewhere = _target_file(tmp_path, "https://payer.example/fhir", "http://elsewhere.example/fhir/Patient/pat-alice")
    with pytest.raises(ConfigError, match="members.primary.fhir_user"):
        load_target(elsewhere, env=ENV)


# --- class 10: shared state ---------------------------------------------------------------------------------------
def test_revoke_all_on_refresh_revocation_gives_the_same_outcomes_as_alone(tmp_path: Path) -> None:
    """A server that revokes every grant of the member on one refresh-token revocation legitimately ends the shared
    launch mid-run: the shared grant is checked before use and replaced once, saying so, so the full suite's outcome
    of test_token_patient_context equals its outcome alone (it failed with 401 in a full run before)."""
    alone = run_suites(["tokens/test_token_response.py"], tmp_path / "alone",
                       variants=(REVOKE_ALL_ON_REFRESH_REVOCATION,), extra=("-k", "test_token_patient_context"))
    full = run_suites(["tokens"], tmp_path / "full", variants=(REVOKE_ALL_ON_REFRESH_REVOCATION,))
    assert _outcomes(alone) == {"test_token_patient_context": {"passed"}}, alone.output
    assert _outcomes(full)["test_token_patient_context"] == {"passed"}, full.output
    assert full.checks_with("failed", "warning", "broken") == set(), full.output
    assert "was no longer valid" in _notes(full) and "replaced, once" in _notes(full), full.output


# --- class 16a: revocation needs client authentication ------------------------------------------------------------
def test_revocation_without_client_auth_is_caught(tmp_path: Path) -> None:
    run = run_suites([REVOCATION], tmp_path, faults=("revocation-without-client-auth",),
                     extra=("-k", "revocation_requires_client_authentication"))
    assert run.checks_with("failed") == {"test_revocation_requires_client_authentication"}, run.output
    message = _finding(run, "test_revocation_requires_client_authentication")["message"]
    assert "RFC7009-07" in message and "no longer refreshes" in message


def test_opaque_access_tokens_are_handles_the_api_and_introspection_resolve() -> None:
    """Variant opaque-access-tokens: the token is no JWT, yet it reads the member's data, introspects as active,
    and is refused once revoked (the harness must never assume a token's format)."""
    from smart_conformance.reference.server import ReferenceServer
    from smart_conformance.reference.variants import OPAQUE_ACCESS_TOKENS
    from tests.reference.launcher import Launcher

    with ReferenceServer(variants=[OPAQUE_ACCESS_TOKENS]) as srv:
        launcher = Launcher(srv)
        token = launcher.launch().tokens["access_token"]
        assert token.count(".") != 2
        with httpx.Client(verify=srv.ssl_context()) as client:
            bearer = {"Authorization": f"Bearer {token}"}
            assert client.get(f"{srv.fhir_base_url}/Patient/pat-alice", headers=bearer).status_code == 200
            seen = client.post(f"{srv.issuer}/introspect", data={"token": token}, auth=launcher.basic()).json()
            assert seen["active"] is True and seen["patient"] == "pat-alice"
            assert client.post(f"{srv.issuer}/revoke", data={"token": token},
                               auth=launcher.basic()).status_code == 200
            assert client.get(f"{srv.fhir_base_url}/Patient/pat-alice", headers=bearer).status_code == 401
