"""The TLS suite against real local servers: a clean payer passes everything; each defect fails exactly its checks.

One module-scoped fixture starts every server (127.0.0.1, free ports), writes one target YAML per scenario and runs
``pytest suites/tls`` once in a subprocess over all of those targets, exactly as a user would. Each scenario then
asserts, from summary.json, that the set of failing (failed or warning) checks equals what its defect should trip and
that nothing else was broken. Two scanner results no local server can produce (SSL 3.0 accepted, a version the
scanner could not test) are simulated by ``tests/tls/simulate.py`` on top of a real scan.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.suite_runner import SuiteRun, run_suites, suite_checks
from tests.tls.simulate import ENV as SIMULATE_ENV
from tests.tls_servers import (
    LOCAL,
    Behaviour,
    Pki,
    closed_port,
    local_openssl_negotiates,
    server_context,
    serving,
)

ALL = frozenset(check for check, module in suite_checks().items() if module.startswith("tls/"))
SCANNED = ALL - {"test_tls_plain_http_not_served"}  # every check that judges sslyze's results

# TLS 1.2 suites a well-configured server offers: ECDHE key exchange, AEAD only.
MODERN = "ECDHE+AESGCM:ECDHE+CHACHA20"
HSTS = ("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
SECRETS = {"TLS_SUITE_CLIENT_SECRET": "tls-suite-secret-1", "TLS_SUITE_MEMBER_PASSWORD": "tls-suite-password-1"}

TARGET_YAML = """\
name: {name}
fhir_base_url: https://127.0.0.1:{port}/fhir
client:
  client_id: tls-suite-app
  client_secret: ${{TLS_SUITE_CLIENT_SECRET}}
  redirect_uri: http://127.0.0.1:8765/callback
members:
  primary:
    username: member
    password: ${{TLS_SUITE_MEMBER_PASSWORD}}
    patient_id: "1"
tls:
  ca_bundle: {ca}
  plain_http_port: {plain_port}
"""


def smart_configuration(auth_port: int | None = None, token_port: int | None = None) -> bytes:
    """A minimal discovery document; endpoints on the FHIR server itself ({port}) unless other ports are given."""
    auth = f"https://127.0.0.1:{auth_port or '{port}'}/auth"
    token = f"https://127.0.0.1:{token_port}/auth/token" if token_port else f"{auth}/token"
    return json.dumps({"issuer": auth, "authorization_endpoint": f"{auth}/authorize", "token_endpoint": token,
                       "jwks_uri": f"{auth}/jwks", "capabilities": ["launch-standalone", "client-confidential-symmetric"],
                       "code_challenge_methods_supported": ["S256"]}).encode()


def payer(*, hsts: tuple[tuple[str, str], ...] = (HSTS,), discovery: bytes | None = None) -> Behaviour:
    """What every scenario's FHIR server answers: CapabilityStatement at /fhir/metadata, discovery, HSTS."""
    return Behaviour(headers=hsts, routes=(
        ("/fhir/.well-known/smart-configuration", "application/json", discovery or smart_configuration()),))


@dataclass(frozen=True)
class Scenario:
    """One target: the checks its defect must fail (or warn) and the checks that must end "could not check"."""

    name: str
    failing: frozenset[str] = frozenset()
    broken: frozenset[str] = frozenset()
    why: str = ""


SCENARIOS = [
    Scenario("clean", why="TLS 1.2+1.3, ECDHE AEAD, valid RSA-2048/SHA-256 leaf, HSTS 2y, http redirects to https; "
                          "auth endpoints on a second clean server"),
    Scenario("legacy-tls", frozenset({"test_tls_legacy_tls_refused"}), why="TLS 1.0/1.1 on FHIR and auth servers"),
    Scenario("legacy-tls-auth-only", frozenset({"test_tls_legacy_tls_refused"}),
             why="FHIR server clean; only the server of authorize/token/jwks accepts TLS 1.0/1.1"),
    Scenario("expired", frozenset({"test_tls_certificate_not_expired", "test_tls_certificate_chain_valid"}),
             frozenset({"test_tls_certificate_profile"}),
             why="leaf expired two days ago (clients reject it too, so its strict profile cannot be judged)"),
    Scenario("expiring-soon", frozenset({"test_tls_certificate_not_expiring_soon"}), why="leaf has 10 days left"),
    Scenario("rsa-1024", frozenset({"test_tls_certificate_key_strength"}), why="1024-bit RSA leaf key"),
    Scenario("sha1-signature", frozenset({"test_tls_certificate_signature_hash", "test_tls_certificate_chain_valid"}),
             frozenset({"test_tls_certificate_profile"}),
             why="leaf signed sha1WithRSAEncryption (clients reject SHA-1 signatures too)"),
    Scenario("hostname-mismatch", frozenset({"test_tls_certificate_hostname_matches"}),
             why="leaf for other.example served on 127.0.0.1"),
    Scenario("untrusted-ca", frozenset({"test_tls_certificate_chain_valid"}), frozenset({"test_tls_certificate_profile"}),
             why="leaf from a CA not in ca_bundle"),
    Scenario("critical-san", frozenset({"test_tls_certificate_profile"}),
             why="leaf with a critical subjectAltName next to a non-empty subject: clients accept the chain (TLS-05 "
                 "passes), cryptography's strict RFC 5280 verifier does not (a TLS-10 SHOULD warning)"),
    Scenario("weak-aes128-sha", frozenset({"test_tls_no_weak_cipher_suites", "test_tls_forward_secrecy"}),
             why="TLS 1.2 offers only AES128-SHA (static RSA, CBC)"),
    Scenario("cbc-only", frozenset({"test_tls_no_weak_cipher_suites"}),
             why="TLS 1.2 offers only ECDHE-RSA-AES128-SHA (forward secret, but no AEAD)"),
    Scenario("static-rsa", frozenset({"test_tls_forward_secrecy"}),
             why="TLS 1.2 offers AES128-GCM-SHA256 (static RSA, AEAD) next to ECDHE-RSA-AES128-GCM-SHA256"),
    Scenario("no-tls13", frozenset({"test_tls_1_3_offered"}), why="TLS 1.2 only"),
    Scenario("tls13-only", frozenset({"test_tls_1_2_accepted"}), why="TLS 1.3 only"),
    Scenario("no-hsts", frozenset({"test_tls_hsts_header"}), why="no Strict-Transport-Security header"),
    Scenario("short-hsts", frozenset({"test_tls_hsts_header"}), why="Strict-Transport-Security: max-age=86400"),
    Scenario("plain-http-served", frozenset({"test_tls_plain_http_not_served"}),
             why="the plain-http port serves the CapabilityStatement"),
    Scenario("plain-http-to-http", frozenset({"test_tls_plain_http_not_served"}),
             why="the plain-http port redirects to another http:// URL"),
    Scenario("hsts-over-plain-http", frozenset({"test_tls_plain_http_not_served"}),
             why="the plain-http port redirects to https but sends Strict-Transport-Security over http"),
    Scenario("sslv3-simulated", frozenset({"test_tls_legacy_ssl_refused"}),
             why="scan result rewritten: SSL 3.0 accepted"),
    Scenario("tls10-untested-simulated", broken=frozenset({"test_tls_legacy_tls_refused",
                                                           "test_tls_no_weak_cipher_suites",
                                                           "test_tls_forward_secrecy"}),
             why="scan result rewritten: TLS 1.0 could not be tested -> broken, never refused"),
    Scenario("token-endpoint-down", broken=SCANNED,
             why="discovery names a token_endpoint on a closed port: every scan-based check is broken, not passed"),
    Scenario("unreachable", broken=ALL, why="nothing listens on the FHIR base's port"),
]


@dataclass
class World:
    run: SuiteRun
    ports: dict[str, int] = field(default_factory=dict)  # "<scenario>" -> FHIR port, "<scenario>:auth" -> auth port
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("tls-suite")
    pki, stranger = Pki(base / "pki"), Pki(base / "other-ca")
    now = dt.datetime.now(dt.UTC)
    good = pki.issue(LOCAL, "localhost")
    legacy_ciphers = f"{MODERN}:ECDHE-RSA-AES128-SHA:@SECLEVEL=0"  # TLS 1.0/1.1 need a CBC suite and SHA-1
    skipped: dict[str, str] = {}
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        reason = local_openssl_negotiates(version, good)
        if reason is not None:
            skipped["legacy-tls"] = skipped["legacy-tls-auth-only"] = (
                f"the local OpenSSL cannot serve {version.name}, so no server here can offer it: {reason}")

    def modern(cert: tuple[Path, Path] = good, **kwargs: object) -> ssl.SSLContext:
        return server_context(cert, ciphers=MODERN, **kwargs)  # type: ignore[arg-type]

    def legacy() -> ssl.SSLContext:
        return server_context(good, minimum=ssl.TLSVersion.TLSv1, ciphers=legacy_ciphers)

    ports: dict[str, int] = {}
    targets: list[Path] = []
    simulate: dict[str, dict[str, str]] = {}
    with ExitStack() as stack:
        def start(behaviour: Behaviour, context: ssl.SSLContext | None) -> int:
            return stack.enter_context(serving(behaviour, context))

        def target(name: str, fhir_port: int, plain_port: int | None = None) -> None:
            ports[name] = fhir_port
            file = base / f"{name}.yaml"
            file.write_text(TARGET_YAML.format(name=name, port=fhir_port, ca=pki.ca_path,
                                               plain_port=plain_port or fhir_port))
            targets.append(file)

        def simple(name: str, context: ssl.SSLContext, behaviour: Behaviour | None = None) -> int:
            port = start(behaviour or payer(), context)
            target(name, port)  # plain http to the TLS port: the server hangs up, nothing is served
            return port

        auth = start(payer(), modern())
        ports["clean:auth"] = auth
        fhir = start(payer(discovery=smart_configuration(auth)), modern())
        target("clean", fhir, start(Behaviour(redirect_to=f"https://127.0.0.1:{fhir}/fhir/metadata"), None))

        if "legacy-tls" not in skipped:
            ports["legacy-tls:auth"] = auth = start(payer(), legacy())
            simple("legacy-tls", legacy(), payer(discovery=smart_configuration(auth)))
            ports["legacy-tls-auth-only:auth"] = auth = start(payer(), legacy())
            simple("legacy-tls-auth-only", modern(), payer(discovery=smart_configuration(auth)))

        simple("expired", modern(pki.issue(LOCAL, not_before=now - dt.timedelta(days=60),
                                           not_after=now - dt.timedelta(days=2))))
        simple("expiring-soon", modern(pki.issue(LOCAL, not_after=now + dt.timedelta(days=10))))
        # OpenSSL will not load a 1024-bit key, or a SHA-1 signed certificate, at its default security level.
        simple("rsa-1024", server_context(pki.issue(LOCAL, key=rsa.generate_private_key(65537, 1024)),
                                          ciphers=f"{MODERN}:@SECLEVEL=1"))
        simple("sha1-signature", server_context(pki.issue(LOCAL, sha1=True), ciphers=f"{MODERN}:@SECLEVEL=0"))
        simple("hostname-mismatch", modern(pki.issue("other.example", key=ec.generate_private_key(ec.SECP256R1()))))
        simple("untrusted-ca", modern(stranger.issue(LOCAL)))
        simple("critical-san", modern(pki.issue(LOCAL, critical_san=True)))
        simple("weak-aes128-sha", server_context(good, ciphers="AES128-SHA"))
        simple("cbc-only", server_context(good, ciphers="ECDHE-RSA-AES128-SHA"))
        simple("static-rsa", server_context(good, ciphers="ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256"))
        simple("no-tls13", modern(maximum=ssl.TLSVersion.TLSv1_2))
        simple("tls13-only", modern(minimum=ssl.TLSVersion.TLSv1_3))
        simple("no-hsts", modern(), payer(hsts=()))
        simple("short-hsts", modern(), payer(hsts=(("Strict-Transport-Security", "max-age=86400"),)))

        fhir = start(payer(), modern())
        target("plain-http-served", fhir, start(Behaviour(), None))
        fhir = start(payer(), modern())
        target("plain-http-to-http", fhir, start(Behaviour(redirect_to="http://127.0.0.1:{port}/fhir/metadata"), None))
        fhir = start(payer(), modern())
        target("hsts-over-plain-http", fhir, start(Behaviour(redirect_to=f"https://127.0.0.1:{fhir}/fhir/metadata",
                                                             headers=(HSTS,)), None))

        simulate[str(simple("sslv3-simulated", modern()))] = {"SSLv3": "accepted"}
        simulate[str(simple("tls10-untested-simulated", modern()))] = {"TLSv1": "not_tested"}

        simple("token-endpoint-down", modern(), payer(discovery=smart_configuration(token_port=closed_port())))
        target("unreachable", closed_port())

        started = time.monotonic()
        run = run_suites(["tls"], base / "reports", targets=tuple(targets), extra=("-p", "tests.tls.simulate"),
                         env={**SECRETS, SIMULATE_ENV: json.dumps(simulate)})
        seconds = time.monotonic() - started
    print(f"\nTLS suite over {len(targets)} targets: {seconds:.1f}s; totals {run.totals()}")
    yield World(run, ports, skipped, seconds)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_fails_exactly_its_checks(world: World, scenario: Scenario) -> None:
    if scenario.name in world.skipped:
        pytest.skip(world.skipped[scenario.name])
    run = world.run
    assert scenario.name in run.summary["targets"], f"{scenario.name} missing from the run\n{run.output}"
    failing = run.checks_with("failed", "warning", target=scenario.name)
    broken = run.checks_with("broken", target=scenario.name)
    assert (failing, broken) == (scenario.failing, scenario.broken), (
        f"{scenario.name} ({scenario.why})\n  failing: {sorted(failing)}\n  broken: {sorted(broken)}\n"
        + "\n".join(f"  {c}: {m}" for c in sorted(failing | broken) for m in run.messages(scenario.name, c)))
    totals = run.totals(scenario.name)
    assert totals["passed"] == len(ALL - scenario.failing - scenario.broken) and totals["skipped"] == 0, totals


def message(world: World, scenario: str, check: str) -> str:
    (text,) = world.run.messages(scenario, check)
    return text


def test_every_tls_check_is_proven_to_fail(world: World) -> None:
    """Each check of the suite fails (or warns) for at least one defect exercised here."""
    proven = set().union(*(s.failing for s in SCENARIOS if s.name not in world.skipped))
    assert ALL - proven == set()


def test_failure_names_every_offending_endpoint_and_how_to_reproduce(world: World) -> None:
    if "legacy-tls" in world.skipped:
        pytest.skip(world.skipped["legacy-tls"])
    text = message(world, "legacy-tls", "test_tls_legacy_tls_refused")
    fhir, auth = world.ports["legacy-tls"], world.ports["legacy-tls:auth"]
    assert text.startswith("TLS-02, FHIR-SEC-02 (SHALL NOT)"), text
    assert f"127.0.0.1:{fhir} (FHIR base): accepts TLSv1, TLSv1.1" in text
    assert f"127.0.0.1:{auth} (authorization_endpoint, token_endpoint, jwks_uri, issuer): accepts TLSv1" in text
    assert f"openssl s_client -connect 127.0.0.1:{fhir} -tls1 " in text
    assert f"openssl s_client -connect 127.0.0.1:{auth} -tls1_1 " in text

    only_auth = message(world, "legacy-tls-auth-only", "test_tls_legacy_tls_refused")
    actual = next(line for line in only_auth.splitlines() if line.strip().startswith("Actual:"))
    assert str(world.ports["legacy-tls-auth-only:auth"]) in actual
    assert str(world.ports["legacy-tls-auth-only"]) not in actual


def test_levels_follow_the_cited_requirements(world: World) -> None:
    """SHALL findings fail, SHOULD findings warn; a TLS 1.3-only server breaks RFC 9325 only, not CARIN/US Core."""
    outcome = {(f["check"], name): f["outcome"] for name, t in world.run.summary["targets"].items()
               for f in t["findings"]}
    assert outcome[("test_tls_1_2_accepted", "tls13-only")] == "failed"
    assert message(world, "tls13-only", "test_tls_1_2_accepted").startswith("TLS-03 (SHALL)")
    assert message(world, "no-tls13", "test_tls_1_3_offered").startswith("[SHOULD] TLS-07 (SHOULD)")
    assert outcome[("test_tls_hsts_header", "no-hsts")] == "warning"
    assert outcome[("test_tls_certificate_profile", "critical-san")] == "warning"
    assert message(world, "critical-san", "test_tls_certificate_profile").startswith("[SHOULD] TLS-10 (SHOULD)")
    assert outcome[("test_tls_certificate_not_expired", "expired")] == "failed"
    assert outcome[("test_tls_certificate_not_expiring_soon", "expiring-soon")] == "warning"
    assert outcome[("test_tls_plain_http_not_served", "hsts-over-plain-http")] == "warning"
    # Data over plain http breaks US Core's SHALL; a redirect to plain http is a SHOULD-level finding.
    assert message(world, "plain-http-served", "test_tls_plain_http_not_served").startswith(
        "FHIR-SEC-01, TLS-06, TLS-09, USCORE-SEC-01 (SHALL)")
    assert message(world, "plain-http-to-http", "test_tls_plain_http_not_served").startswith(
        "[SHOULD] FHIR-SEC-01, TLS-09 (SHOULD)")


def test_hsts_judged_from_sslyze_when_the_strict_client_cannot_connect(world: World) -> None:
    """With an invalid certificate the harness's own client cannot GET /metadata; HSTS still has a verdict."""
    assert "test_tls_hsts_header" not in world.run.checks_with("broken", target="expired")


def test_unreachable_is_broken_with_the_reason(world: World) -> None:
    text = message(world, "unreachable", "test_tls_legacy_tls_refused")
    assert "could not check" in text and "not reachable" in text
    down = message(world, "token-endpoint-down", "test_tls_legacy_tls_refused")
    assert "token_endpoint" in down and "not reachable" in down
    untested = message(world, "tls10-untested-simulated", "test_tls_legacy_tls_refused")
    assert "TLSv1 could not be tested" in untested
