"""SMART Backend Services on the reference server and in the harness: the client_credentials grant, the target file's
backend_client section, not-applicable without one, and no private key or assertion in any report."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml

from smart_conformance import paths
from smart_conformance.config import ConfigError, Target, load_target
from smart_conformance.launcher import credentials
from smart_conformance.reference.backend import BACKEND_CLIENT_ID, load_backend
from smart_conformance.reference.server import ReferenceServer
from smart_conformance.smart.assertion import (
    Signer,
    load_private_key,
    request_token,
    token_form,
)
from tests.reference.launcher import Launcher
from tests.suite_runner import run_suites
from tests.test_secret_scan import JWT, contents, scan

SCOPES = "system/Patient.rs system/Coverage.rs"


def _signer(srv: ReferenceServer, alg: str = "RS384") -> Signer:
    backend = load_backend(srv.state_dir)
    key = load_private_key(backend.key_files[alg].read_text())
    return Signer(BACKEND_CLIENT_ID, key, alg, backend.kids[alg])


def _token(srv: ReferenceServer, form: dict[str, str], **kwargs: object) -> httpx.Response:
    with httpx.Client(verify=str(srv.ca_path)) as client:
        return request_token(client, srv.issuer + "/token", form, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_client_credentials_with_either_registered_key(server: ReferenceServer, alg: str) -> None:
    signer = _signer(server, alg)
    response = _token(server, token_form(signer.assertion(server.issuer + "/token"), SCOPES + " system/Group.rs"))
    body = response.json()
    assert response.status_code == 200 and body["token_type"] == "bearer" and body["expires_in"] == 300, body
    assert body["scope"] == SCOPES and "refresh_token" not in body  # unknown/unregistered scopes dropped
    assert response.headers["cache-control"] == "no-store"
    with httpx.Client(verify=str(server.ca_path)) as client:
        auth = {"Authorization": f"Bearer {body['access_token']}"}
        assert client.get(server.fhir_base_url + "/Coverage", headers=auth).json()["total"] >= 2  # every member
        assert client.get(server.fhir_base_url + "/Practitioner", headers=auth).status_code == 403


def test_assertion_refusals_are_invalid_client_and_replay_is_caught(server: ReferenceServer) -> None:
    signer = _signer(server)
    aud = server.issuer + "/token"
    assertion = signer.assertion(aud)
    assert _token(server, token_form(assertion, SCOPES)).status_code == 200
    replay = _token(server, token_form(assertion, SCOPES))
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"
    assert "www-authenticate" in replay.headers or replay.status_code == 401
    for bad in (signer.sign(signer.claims(aud, now=time.time() - 400)), signer.sign(signer.claims(aud + "x")),
                signer.unsigned(signer.claims(aud)), signer.hs256_with_public_key(signer.claims(aud)),
                signer.sign(signer.claims(aud), kid="nope")):
        response = _token(server, token_form(bad, SCOPES))
        assert response.status_code == 401 and response.json()["error"] == "invalid_client", response.text
    nothing = _token(server, token_form(signer.assertion(aud), "system/Practitioner.rs"))
    assert nothing.status_code == 400 and nothing.json()["error"] == "invalid_scope"


def test_member_client_may_not_use_client_credentials(launcher: Launcher) -> None:
    """The patient-facing client authenticates fine but is not registered for the grant: unauthorized_client."""
    response = launcher.token_post({"grant_type": "client_credentials", "scope": SCOPES})
    assert response.status_code == 400 and response.json()["error"] == "unauthorized_client"
    unknown = launcher.token_post({"grant_type": "client_credentials", "scope": SCOPES}, ("nobody", "x"))
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"


def test_keys_are_generated_private_and_stable(tmp_path: Path) -> None:
    first = load_backend(tmp_path)
    assert oct(first.key_files["RS384"].stat().st_mode & 0o777) == "0o600"
    jwks = first.clients[BACKEND_CLIENT_ID].jwks["keys"]
    assert {k["kty"] for k in jwks} == {"RSA", "EC"} and all("d" not in k for k in jwks)
    assert load_backend(tmp_path).kids == first.kids


# --- the target file -----------------------------------------------------------------------------------------------
def _target(tmp_path: Path, server: ReferenceServer, backend: object, bulk: object = None) -> Path:
    raw = yaml.safe_load(paths.reference_target().read_text())
    raw["attestations"] = str(paths.reference_target().parent / raw["attestations"])
    if backend is None:
        raw.pop("backend_client", None)
        raw.pop("bulk", None)
    elif backend != "keep":
        raw["backend_client"] = backend
    if bulk is not None:
        raw["bulk"] = bulk
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_backend_client_config_errors(tmp_path: Path, server: ReferenceServer) -> None:
    env = {**os.environ, **server.target_env()}
    key_file = env["SMART_REFERENCE_BACKEND_KEY_FILE"]
    good = {"client_id": "c", "private_key": {"file": key_file}, "alg": "RS384", "kid": "k",
            "scopes": "system/Patient.rs"}
    target = load_target(_target(tmp_path, server, good), env)
    assert target.backend_client is not None and target.backend_client.alg == "RS384"
    assert "PRIVATE KEY" not in repr(target.backend_client)
    cases = [
        ({**good, "private_key": "-----BEGIN PRIVATE KEY-----"}, "backend_client.private_key", "may not be written"),
        ({**good, "alg": "ES384"}, "backend_client.alg", "does not fit ES384"),
        ({**good, "alg": "HS256"}, "backend_client.alg", "is not allowed"),
        ({**good, "client_idd": "x"}, "backend_client.client_idd", "did you mean 'client_id'"),
        ({**good, "scopes": "patient/Patient.rs"}, "backend_client.scopes", ""),
        ({**good, "private_key": {"file": str(tmp_path / "missing.pem")}}, "backend_client.private_key", "cannot read"),
    ]
    for backend, key, words in cases:
        with pytest.raises(ConfigError) as info:
            load_target(_target(tmp_path, server, backend), env)
        assert info.value.key == key and words in str(info.value), str(info.value)
    with pytest.raises(ConfigError) as info:
        load_target(_target(tmp_path, server, None, bulk={"group_id": "g"}), env)
    assert info.value.key == "bulk"


def test_member_client_private_key_jwt_config(tmp_path: Path, server: ReferenceServer) -> None:
    """client.auth_method private_key_jwt: the key loads and fits alg, no secret beside it, key fields only with it."""
    env = {**os.environ, **server.target_env()}
    good = {"client_id": "app", "redirect_uri": "http://127.0.0.1:8765/callback", "auth_method": "private_key_jwt",
            "private_key": {"file": env["SMART_REFERENCE_MEMBER_KEY_FILE"]}, "alg": "RS384", "kid": "k"}

    def load(client: dict[str, object]) -> Target:
        raw = yaml.safe_load(_target(tmp_path, server, "keep").read_text())
        raw["client"] = client
        path = tmp_path / "member.yaml"
        path.write_text(yaml.safe_dump(raw))
        return load_target(path, env)

    client = load(good).client
    assert client.auth_method == "private_key_jwt" and client.kid == "k" and "PRIVATE KEY" not in repr(client)
    assert credentials(client).signer is not None
    cases = [
        ({k: v for k, v in good.items() if k != "kid"}, "client.kid", "needs kid"),
        ({**good, "alg": "ES384"}, "client.alg", "does not fit ES384"),
        ({**good, "client_secret": "${SMART_REFERENCE_CLIENT_SECRET}"}, "client.client_secret", "has no client secret"),
        ({**good, "auth_method": "client_secret_basic"}, "client.private_key", "only used with auth_method"),
        ({**good, "private_key": "-----BEGIN PRIVATE KEY-----"}, "client.private_key", "may not be written"),
        ({**good, "kidd": "k"}, "client.kidd", "did you mean 'kid'"),
    ]
    for client_raw, key, words in cases:
        with pytest.raises(ConfigError) as info:
            load(client_raw)
        assert info.value.key == key and words in str(info.value), str(info.value)


# --- suites -------------------------------------------------------------------------------------------------------
def test_target_without_backend_client_is_not_applicable(tmp_path: Path, server: ReferenceServer) -> None:
    target = _target(tmp_path, server, None)
    run = run_suites(["backend_services", "bulk_export"], tmp_path / "r", targets=(target,), env=server.target_env(),
                     extra=("-rs",))
    totals = {k: v for k, v in run.totals().items() if v}
    assert set(totals) == {"skipped"} and totals["skipped"] >= 20, run.output
    reasons = [line for line in run.output.splitlines() if line.startswith("SKIPPED")]
    assert reasons and all("not applicable: no backend client configured" in line for line in reasons), run.output


PEM_LINE = re.compile(rb"^[A-Za-z0-9+/]{64}$", re.MULTILINE)
ASSERTION_FIELD = re.compile(rb"client_assertion=(?!\*|%2A)[^&\s\"']+")


def test_private_key_and_assertions_never_reach_a_report(tmp_path: Path) -> None:
    """A failing backend and bulk run (three faults, so failure texts carry token-endpoint and file exchanges and
    curls) writes no line of the private key (its PEM lines are 64 base64 characters), no client_assertion value and
    no token."""
    run = run_suites(["backend_services", "bulk_export"], tmp_path / "r",
                     faults=("assertion-exp-not-checked", "backend-refresh-token-issued", "bulk-ndjson-invalid"))
    assert run.checks_with("failed", "warning") == {"test_assertion_expired_refused", "test_backend_no_refresh_token",
                                                      "test_bulk_ndjson_parses"}, run.output
    message = " ".join(run.messages("reference", "test_assertion_expired_refused"))
    assert "curl" in message and "client_assertion=" in message, message  # the scan below sees a real exchange
    files = [f for f in (tmp_path / "r").rglob("*") if f.is_file()]
    problems: list[str] = []
    for file in files:
        for name, content in contents(file):
            problems += scan(f"{file.name}{name}", content, [])
            if b"PRIVATE KEY" in content or PEM_LINE.search(content):
                problems.append(f"{file.name}{name}: private key material")
            if ASSERTION_FIELD.search(content) or JWT.search(content):
                problems.append(f"{file.name}{name}: an assertion or token")
    assert not problems, "\n".join(problems)


# --- variants and bulk export -------------------------------------------------------------------------------------
def test_jwks_url_variant_uses_the_hosted_keys() -> None:
    """Registered by JWKS URL, the server verifies with whatever the client hosts now: drop the RSA key from the
    hosted set and an RS384 assertion fails while ES384 still works."""
    from smart_conformance.reference.variants import BACKEND_JWKS_URL

    with ReferenceServer(variants=[BACKEND_JWKS_URL]) as srv:
        aud = srv.issuer + "/token"
        with httpx.Client(verify=str(srv.ca_path)) as client:
            hosted = client.get(srv.target_env()["SMART_REFERENCE_BACKEND_JWKS_URL"])
        assert hosted.status_code == 200 and {k["kty"] for k in hosted.json()["keys"]} == {"RSA", "EC"}
        assert _token(srv, token_form(_signer(srv).assertion(aud), SCOPES)).status_code == 200
        client_reg = load_backend(srv.state_dir).clients[BACKEND_CLIENT_ID]
        client_reg.registered_jwks = {"keys": [k for k in client_reg.registered_jwks["keys"] if k["kty"] == "EC"]}
        refused = _token(srv, token_form(_signer(srv).assertion(aud), SCOPES))
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        assert _token(srv, token_form(_signer(srv, "ES384").assertion(aud), SCOPES)).status_code == 200


def _system_token(srv: ReferenceServer, scope: str = SCOPES) -> str:
    response = _token(srv, token_form(_signer(srv).assertion(srv.issuer + "/token"), scope))
    return str(response.json()["access_token"])


def test_bulk_kickoff_refusals(server: ReferenceServer, alice: object) -> None:
    from smart_conformance.reference.bulk import GROUP_ID

    url = f"{server.fhir_base_url}/Group/{GROUP_ID}/$export"
    token = _system_token(server)
    with httpx.Client(verify=str(server.ca_path)) as client:
        async_ = {"Prefer": "respond-async", "Authorization": f"Bearer {token}"}
        assert client.get(url, headers={"Prefer": "respond-async"}).status_code == 401
        assert client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 400  # no Prefer
        assert client.get(url, params={"_type": "Practitioner"}, headers=async_).status_code == 403  # beyond scope
        member = {"Prefer": "respond-async", "Authorization": f"Bearer {alice.tokens['access_token']}"}  # type: ignore[attr-defined]
        assert client.get(url, headers=member).status_code == 403  # a member token is no system token
        assert client.get(f"{server.fhir_base_url}/Group/other/$export", headers=async_).status_code == 404
        kicked = client.get(url, params={"_type": "Coverage"}, headers=async_)
        assert kicked.status_code == 202 and kicked.headers["content-location"].startswith(server.fhir_base_url)


@pytest.mark.parametrize("variant", ["bulk-status-429", "bulk-files-without-token"])
def test_bulk_variants(variant: str) -> None:
    from smart_conformance.http import RecordingClient
    from smart_conformance.reference.bulk import GROUP_ID
    from smart_conformance.smart.bulk import kickoff, poll

    with ReferenceServer(variants=[variant]) as srv:
        token = _system_token(srv)
        with RecordingClient(verify=srv.ssl_context()) as http:
            export = poll(http, kickoff(http, f"{srv.fhir_base_url}/Group/{GROUP_ID}/$export", token), token, 20)
            assert export.manifest is not None, export.log()
            if variant == "bulk-status-429":
                statuses = [p.status for p in export.polls]
                assert statuses[0] == 202 and 429 in statuses and statuses[-1] == 200, export.log()
                assert all(b.at - a.at >= 0.9 for a, b in zip(export.polls, export.polls[1:], strict=False)), export.log()
            else:
                assert export.manifest["requiresAccessToken"] is False
                url = export.manifest["output"][0]["url"]
                assert http.get(url).status_code == 200  # served without a token, as the manifest says


@pytest.mark.parametrize("fault", [None, "expired-token-accepted"], ids=["clean", "expired-token-accepted"])
def test_backend_expiry_check_with_short_lived_tokens(fault: str | None, tmp_path: Path) -> None:
    """With 10-second tokens the backend expiry check runs (not skipped): it passes clean and fails with the fault
    (the FHIR API then ignores exp). Proves test_backend_token_refused_after_expiry (PROVEN_ELSEWHERE)."""
    run = run_suites(["backend_services/test_token_use.py"], tmp_path, faults=(fault,) if fault else (),
                     env={"SMART_REFERENCE_ACCESS_TOKEN_TTL": "10"})
    assert not run.checks_with("broken") and run.totals().get("skipped", 0) == 0, run.output
    assert run.checks_with("failed", "warning") == ({"test_backend_token_refused_after_expiry"} if fault else set()), \
        run.output
