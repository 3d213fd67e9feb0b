"""Split deployments and SMART v1 discovery (issue 10, class 12).

The authorization server and the FHIR API often live on different origins, and SMART v1 servers publish their
endpoints only in the CapabilityStatement's oauth-uris extension (SMART on FHIR v1, "Publishing OAuth2 URLs"). A
client then finds the endpoints there; a missing ``.well-known/smart-configuration`` is one finding of its own
(SMART-DISC-01, SHALL in SMART App Launch 1.0.0 and 2.x), not a reason for every other check to go unchecked. The
target file may name the SMART configuration's URL when it is not under the FHIR base.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from smart_conformance import paths
from smart_conformance.config import ConfigError, load_target
from smart_conformance.reference.server import HOST, ReferenceServer
from smart_conformance.reference.variants import (
    SMART_V1_DISCOVERY_ONLY,
    SPLIT_ORIGIN_AUTH_SERVER,
)
from smart_conformance.smart.discovery import (
    CAPABILITY_STATEMENT,
    WELL_KNOWN,
    Document,
    config_from_statement,
    discover,
)
from tests.suite_runner import SuiteRun, run_suites


def _get(srv: ReferenceServer, url: str) -> httpx.Response:
    with httpx.Client(verify=srv.ssl_context(), timeout=10.0) as client:
        return client.get(url)


def _target_file(tmp_path: Path, srv: ReferenceServer, **changes: Any) -> Path:
    """The reference's target file as a payer of that shape writes it (``None`` deletes a key)."""
    raw = yaml.safe_load(paths.reference_target().read_text(encoding="utf-8"))
    raw["attestations"] = str(paths.fixtures_dir() / "attestations" / "reference.yaml")
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    file = tmp_path / "payer.yaml"
    file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return file


def _outcome(run: SuiteRun, check: str) -> str:
    """The one outcome of a (not parametrized) check in a run."""
    outcomes = {v for k, v in run.summary["targets"]["reference"]["results"].items()
                if k.split("::")[1].split("[")[0] == check}
    assert len(outcomes) == 1, (check, outcomes, run.output[-3000:])
    return outcomes.pop()


def _skip_reason(run: SuiteRun, check: str) -> str:
    """Why a check was not applicable, from its Allure result (the summary lists only findings)."""
    for file in (run.reports / "allure-results").glob("*-result.json"):
        result = json.loads(file.read_text(encoding="utf-8"))
        if result.get("fullName", "").split("#")[-1] == check and result.get("status") == "skipped":
            return str((result.get("statusDetails") or {}).get("message", ""))
    raise AssertionError(f"{check} was not skipped: {run.output[-3000:]}")


def _finding(run: SuiteRun, check: str) -> dict[str, Any]:
    found = [f for f in run.summary["targets"]["reference"]["findings"] if f["check"] == check]
    assert found, (check, run.output[-3000:])
    return found[0]


# --- the reference server's layouts ---------------------------------------------------------------------------------

def test_default_layout_is_one_origin(server: ReferenceServer) -> None:
    """Without the variant, issuer, endpoints and FHIR API share the one origin (unchanged layout)."""
    assert server.origins == (server.origin,) and server.issuer == server.origin + "/auth"
    config = _get(server, server.fhir_base_url + "/.well-known/smart-configuration").json()
    assert config["token_endpoint"] == server.origin + "/auth/token"


def test_split_origin_serves_the_authorization_server_on_its_own_listener() -> None:
    """Two https origins from the same test CA: the FHIR API on one, the authorization server on the other, the
    discovery documents pointing across; both listeners stop with the server."""
    with ReferenceServer(variants=[SPLIT_ORIGIN_AUTH_SERVER]) as srv:
        fhir_origin, auth_origin = srv.origins
        assert fhir_origin != auth_origin and srv.issuer == auth_origin + "/auth"
        config = _get(srv, srv.fhir_base_url + "/.well-known/smart-configuration").json()
        for name in ("issuer", "authorization_endpoint", "token_endpoint", "revocation_endpoint",
                     "introspection_endpoint", "jwks_uri"):
            assert config[name].startswith(auth_origin + "/auth"), (name, config[name])
        oidc = _get(srv, srv.issuer + "/.well-known/openid-configuration").json()
        assert oidc["issuer"] == config["issuer"] and oidc["jwks_uri"] == config["jwks_uri"]
        assert _get(srv, config["jwks_uri"]).status_code == 200  # the certificate verifies for the second port too
        assert _get(srv, fhir_origin + "/auth/jwks").status_code == 404  # no authorization server on the FHIR origin
        assert _get(srv, auth_origin + "/fhir/metadata").status_code == 404  # no FHIR API on the auth origin
        ports = (srv.port, srv.auth_port)
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection((HOST, port), timeout=2).close()


def test_v1_discovery_only_publishes_oauth_uris_and_no_smart2_fields() -> None:
    with ReferenceServer(variants=[SMART_V1_DISCOVERY_ONLY]) as srv:
        assert _get(srv, srv.fhir_base_url + "/.well-known/smart-configuration").status_code == 404
        statement = _get(srv, srv.fhir_base_url + "/metadata").json()
    config = config_from_statement(statement, srv.fhir_base_url + "/metadata")
    assert config is not None and config["authorization_endpoint"] == srv.issuer + "/authorize"
    assert config["token_endpoint"] == srv.issuer + "/token"
    assert not {"permission-v1", "permission-v2", "authorize-post"} & set(config["capabilities"])
    assert not {"issuer", "code_challenge_methods_supported", "grant_types_supported"} & set(config)


# --- the client side: discovery falls back to oauth-uris ------------------------------------------------------------

def _doc(url: str, status: int, body: Any) -> Document:
    return Document(url=url, status=status, content_type="application/json", json=body, parse_error=None,
                    exchange=None, headers=httpx.Headers())


def test_discover_prefers_the_well_known_then_falls_back_to_oauth_uris() -> None:
    statement = {"resourceType": "CapabilityStatement", "rest": [{"mode": "server", "security": {"extension": [
        {"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", "extension": [
            {"url": "authorize", "valueUri": "https://auth.example/authorize"},
            {"url": "token", "valueUri": "/oauth/token"}]}]}}]}
    meta = _doc("https://fhir.example/r4/metadata", 200, statement)
    well_known = _doc("https://fhir.example/r4/.well-known/smart-configuration", 200, {"token_endpoint": "https://t"})
    assert discover(well_known, meta).source == WELL_KNOWN
    found = discover(_doc(well_known.url, 404, {"resourceType": "OperationOutcome"}), meta)
    assert found is not None and found.source == CAPABILITY_STATEMENT
    assert found.config == {"authorization_endpoint": "https://auth.example/authorize",
                            "token_endpoint": "https://fhir.example/oauth/token"}  # relative joined to /metadata
    assert discover(_doc(well_known.url, 404, None), _doc(meta.url, 200, {"resourceType": "CapabilityStatement"})) \
        is None


# --- whole-suite verdicts against a v1-only server ------------------------------------------------------------------

V1_CHECKS = ("-k", ("test_smart_configuration_served or test_token_endpoint_advertised_and_answers or "
                    "test_oauth_uris_match_well_known or test_grant_types_supported or test_pkce_s256_only or "
                    "test_openid_configuration_served or test_standalone_launch_succeeds"))
V1_SUITES = ["discovery/test_smart_configuration.py", "discovery/test_capability_statement.py",
             "discovery/test_openid_configuration.py", "launch/test_standalone_launch.py"]


def test_v1_target_discovers_through_oauth_uris(tmp_path: Path) -> None:
    """A target declaring SMART v1, with no smart-configuration: endpoints come from oauth-uris, the launch works, the
    OpenID configuration is found from the id_token's iss, and SMART 2-only fields are not applicable — no failure."""
    run = run_suites(V1_SUITES, tmp_path, variants=(SMART_V1_DISCOVERY_ONLY,), extra=V1_CHECKS)
    assert run.totals()["failed"] == 0 and run.totals()["broken"] == 0, run.output[-3000:]
    for check in ("test_token_endpoint_advertised_and_answers", "test_oauth_uris_match_well_known",
                  "test_openid_configuration_served", "test_standalone_launch_succeeds"):
        assert _outcome(run, check) == "passed", check
    for check in ("test_grant_types_supported", "test_pkce_s256_only"):
        assert _outcome(run, check) == "skipped", check
    reason = _skip_reason(run, "test_smart_configuration_served")
    assert "declares SMART v1" in reason and "oauth-uris give" in reason and "/auth/token" in reason, reason


@pytest.mark.parametrize("declared", ["auto", "2"])
def test_missing_well_known_is_its_own_shall_finding(tmp_path: Path, declared: str) -> None:
    """The same server, with a target file that does not declare v1: the missing document fails SMART-DISC-01 at
    SHALL, once, naming the oauth-uris found instead; the launch still runs from them."""
    with ReferenceServer(variants=[SMART_V1_DISCOVERY_ONLY]) as srv:
        file = _target_file(tmp_path, srv, smart_version=declared)
        run = run_suites(V1_SUITES, tmp_path / "r", targets=(file,), env=srv.target_env(), extra=V1_CHECKS)
    failed = run.checks_with("failed")
    assert failed == {"test_smart_configuration_served"}, run.output[-3000:]
    finding = _finding(run, "test_smart_configuration_served")
    assert finding["outcome"] == "failed" and finding["message"].startswith("SMART-DISC-01"), finding
    assert {r["id"]: r["level"] for r in finding["requirements"]}["SMART-DISC-01"] == "SHALL"
    assert "oauth-uris" in finding["message"] and 'smart_version: "1"' in finding["message"]
    assert _outcome(run, "test_standalone_launch_succeeds") == "passed"


# --- the target file names the discovery URL ------------------------------------------------------------------------

DISCOVERY_CHECKS = ("-k", "test_smart_configuration_served or test_token_endpoint_advertised_and_answers")


def test_discovery_url_from_the_target_file_is_used(tmp_path: Path) -> None:
    """discovery.smart_configuration_url points at the authorization server's own copy (split origins): the checks
    pass from there; pointed at a URL that serves nothing, the served check fails naming that URL."""
    with ReferenceServer(variants=[SPLIT_ORIGIN_AUTH_SERVER]) as srv:
        elsewhere = srv.issuer + "/.well-known/smart-configuration"
        good = _target_file(tmp_path, srv, discovery={"smart_configuration_url": elsewhere})
        run = run_suites(["discovery/test_smart_configuration.py"], tmp_path / "good", targets=(good,),
                         env=srv.target_env(), extra=DISCOVERY_CHECKS)
        assert run.totals()["passed"] == 2 and run.totals()["failed"] == 0, run.output[-3000:]
        nowhere = srv.issuer + "/nowhere/smart-configuration"
        (tmp_path / "bad").mkdir()
        bad = _target_file(tmp_path / "bad", srv, discovery={"smart_configuration_url": nowhere})
        run = run_suites(["discovery/test_smart_configuration.py"], tmp_path / "bad" / "r", targets=(bad,),
                         env=srv.target_env(), extra=DISCOVERY_CHECKS)
    assert run.checks_with("failed") == {"test_smart_configuration_served"}, run.output[-3000:]
    assert nowhere in _finding(run, "test_smart_configuration_served")["message"]


MINIMAL = """\
name: acme
fhir_base_url: https://fhir.acme.example/r4
client: {client_id: app, redirect_uri: "https://app.example/cb"}
members: {primary: {username: u, password: "${PW}", patient_id: p1}}
"""


def _load(tmp_path: Path, extra: str) -> Any:
    file = tmp_path / "t.yaml"
    file.write_text(MINIMAL + extra, encoding="utf-8")
    return load_target(file, {"PW": "secret-pw"})


def test_discovery_url_key_is_validated(tmp_path: Path) -> None:
    url = "https://auth.acme.example/.well-known/smart-configuration"
    assert _load(tmp_path, f"discovery: {{smart_configuration_url: {url}}}\n").smart_configuration_url == url
    assert _load(tmp_path, "").smart_configuration_url is None
    for bad in ("http://auth.acme.example/.well-known/smart-configuration", "/.well-known/smart-configuration"):
        with pytest.raises(ConfigError) as err:
            _load(tmp_path, f"discovery: {{smart_configuration_url: '{bad}'}}\n")
        assert err.value.key == "discovery.smart_configuration_url" and "absolute https URL" in err.value.problem
        assert "https://" in err.value.fix
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f"discovery: {{smart_configuration_uri: {url}}}\n")
    assert err.value.key == "discovery.smart_configuration_uri" and "did you mean 'smart_configuration_url'" \
        in err.value.fix
