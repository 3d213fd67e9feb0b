"""TLS probing against real local servers: what sslyze reports must match how each server was configured.

Every server listens on 127.0.0.1 on a free port and is stopped by the fixture that started it. The servers and the
test PKI live in tests/tls_servers.py, shared with the TLS suite's end-to-end tests (tests/tls/).
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from smart_conformance import tls
from smart_conformance.tls import (
    CertificateSummary,
    Endpoint,
    HstsPolicy,
    TlsScan,
    TlsScanSettings,
    policy,
)
from tests.tls_servers import (
    LOCAL,
    Behaviour,
    Pki,
    closed_port,
    local_openssl_negotiates,
    server_context,
    serving,
)

# sslyze's bundled trust stores hold a certificate with a non-positive serial; cryptography warns on loading it.
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")

MAX_SECONDS_PER_HOST = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


# --------------------------------------------------------------------------------------------------------------------
# One sslyze run over a fleet of differently broken servers
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Fleet:
    scans: dict[str, TlsScan]
    ports: dict[str, int]
    total_s: float


@pytest.fixture(scope="module")
def fleet(pki: Pki) -> Iterator[Fleet]:
    now = dt.datetime.now(dt.UTC)
    good = pki.issue(LOCAL, "localhost")
    hsts = (("Strict-Transport-Security", "max-age=63072000; includeSubDomains"),)
    servers: dict[str, tuple[Behaviour, ssl.SSLContext]] = {
        "modern": (Behaviour(headers=hsts), server_context(good)),
        "legacy": (Behaviour(), server_context(good, minimum=ssl.TLSVersion.TLSv1, ciphers="ALL:@SECLEVEL=0")),
        "weak": (Behaviour(), server_context(good, maximum=ssl.TLSVersion.TLSv1_2,
                                             ciphers="AES128-SHA:NULL-SHA256:@SECLEVEL=0")),
        "expired": (Behaviour(), server_context(pki.issue(LOCAL, not_before=now - dt.timedelta(days=60),
                                                          not_after=now - dt.timedelta(days=2)))),
        # OpenSSL will not even load a 1024-bit key at the default security level 2.
        "rsa1024": (Behaviour(), server_context(pki.issue(LOCAL, key=rsa.generate_private_key(65537, 1024)),
                                                ciphers="DEFAULT:@SECLEVEL=1")),
        "mismatch": (Behaviour(), server_context(pki.issue("other.example",
                                                           key=ec.generate_private_key(ec.SECP256R1())))),
    }
    with ExitStack() as stack:
        ports = {name: stack.enter_context(serving(b, ctx)) for name, (b, ctx) in servers.items()}
        ports["unreachable"] = closed_port()
        endpoints = {name: Endpoint(LOCAL, port, LOCAL) for name, port in ports.items()}
        started = time.monotonic()
        results = tls.scan(list(endpoints.values()), TlsScanSettings(ca_bundle=pki.ca_path))
        total = time.monotonic() - started
        yield Fleet({name: results[ep] for name, ep in endpoints.items()}, ports, total)


def statuses(scan: TlsScan) -> dict[str, str]:
    return {p.version: p.status for p in scan.protocols}


def cipher_problems(scan: TlsScan) -> dict[str, set[str]]:
    """What tls.policy says about the accepted suites below TLS 1.3, keyed by problem, as the suite judges them."""
    out: dict[str, set[str]] = {}
    for version in policy.PRE_TLS13:
        result = scan.protocol(version)
        if result.status != "accepted":
            continue
        for c in result.accepted_ciphers:
            for flag in policy.broken_cipher_flags(c):
                out.setdefault(flag, set()).add(f"{version} {c.name}")
            if policy.lacks_forward_secrecy(c):
                out.setdefault("no-forward-secrecy", set()).add(f"{version} {c.name}")
        if policy.lacks_aead(version, result.accepted_ciphers):
            out.setdefault("no-aead", set()).add(version)
    return out


def cert_problems(cert: CertificateSummary, now: dt.datetime | None = None) -> set[str]:
    """What the certificate checks would say about one leaf, by tls.policy's rules."""
    now = now or dt.datetime.now(dt.UTC)
    problems = {policy.validity(cert, now)} - {"valid"}
    if policy.expiring_soon(cert, now):
        problems.add("expiring-soon")
    if not cert.hostname_ok:
        problems.add("hostname-mismatch")
    if cert.client_valid is False:
        problems.add("untrusted")
    elif cert.client_valid and not cert.strict_profile_ok:
        problems.add("strict-profile")
    if policy.key_strength(cert) != "strong":
        problems.add(f"key-{policy.key_strength(cert)}")
    if policy.signature_hash_strength(cert) != "strong":
        problems.add(f"signature-{policy.signature_hash_strength(cert)}")
    return problems


def test_one_scan_covers_the_fleet_within_budget(fleet: Fleet) -> None:
    durations = {name: round(s.duration_s, 2) for name, s in fleet.scans.items()}
    print(f"\nsslyze fleet run: {fleet.total_s:.2f}s total for {len(durations)} endpoints; per endpoint {durations}")
    # Seven servers share one run (and this machine's cores); each still comes back well inside a few seconds.
    assert fleet.total_s < 3 * MAX_SECONDS_PER_HOST
    assert set(fleet.scans) == {"modern", "legacy", "weak", "expired", "rsa1024", "mismatch", "unreachable"}


def test_modern_server_accepts_only_tls12_and_tls13(fleet: Fleet) -> None:
    scan = fleet.scans["modern"]
    assert scan.reachable and scan.highest_version == "TLSv1.3"
    assert statuses(scan) == {"SSLv2": "refused", "SSLv3": "refused", "TLSv1": "refused", "TLSv1.1": "refused",
                              "TLSv1.2": "accepted", "TLSv1.3": "accepted"}
    assert all(c.is_aead and c.forward_secret for c in scan.protocol("TLSv1.3").accepted_ciphers)
    assert cipher_problems(scan) == {}


def test_modern_server_certificate_is_valid_against_the_supplied_ca(fleet: Fleet) -> None:
    cert = fleet.scans["modern"].certificate
    assert cert is not None, fleet.scans["modern"].certificate_error
    assert (cert.chain_valid, cert.hostname_ok, cert.trusted_ignoring_hostname) == (True, True, True)
    assert cert.trust_store == "Supplied CA file" and cert.validation_error is None
    assert (cert.key_type, cert.key_size, cert.signature_hash) == ("RSA", 2048, "sha256")
    assert cert.san_ip == (LOCAL,) and "localhost" in cert.san_dns
    assert cert.not_after - cert.not_before >= dt.timedelta(days=360)
    assert cert_problems(cert) == set()


def test_hsts_header_seen_by_sslyze_present_and_absent(fleet: Fleet) -> None:
    assert fleet.scans["modern"].hsts == HstsPolicy(max_age=63072000, include_subdomains=True, preload=False)
    assert policy.hsts_problem(fleet.scans["modern"].hsts) is None
    legacy = fleet.scans["legacy"]
    assert legacy.hsts is None and legacy.hsts_error is None and legacy.hsts_path == "/"
    assert policy.hsts_problem(legacy.hsts) == "no Strict-Transport-Security header"


def test_legacy_server_tls10_and_tls11_are_reported_accepted(fleet: Fleet, pki: Pki) -> None:
    cert = pki.issue(LOCAL)
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        reason = local_openssl_negotiates(version, cert)
        if reason is not None:
            pytest.skip(f"the local OpenSSL cannot serve {version.name}, so no server here can offer it: {reason}")
    scan = fleet.scans["legacy"]
    got = statuses(scan)
    assert got["TLSv1"] == "accepted" and got["TLSv1.1"] == "accepted"
    assert got["TLSv1.2"] == "accepted" and got["TLSv1.3"] == "accepted"
    # The server's OpenSSL has no SSLv3/SSLv2 at all; sslyze's legacy client did try, and the server said no.
    assert got["SSLv3"] == "refused" and got["SSLv2"] == "refused"
    # "ALL" includes anonymous ECDH and static-RSA suites: both must be called out.
    assert {"anonymous", "no-forward-secrecy"} <= set(cipher_problems(scan))


def test_weak_cipher_suites_on_tls12_are_judged_weak(fleet: Fleet) -> None:
    scan = fleet.scans["weak"]
    assert statuses(scan)["TLSv1.3"] == "refused"
    names = {c.name for c in scan.protocol("TLSv1.2").accepted_ciphers}
    assert names == {"TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_NULL_SHA256"}
    problems = cipher_problems(scan)
    assert set(problems) == {"NULL", "no-forward-secrecy", "no-aead"}
    assert problems["NULL"] == {"TLSv1.2 TLS_RSA_WITH_NULL_SHA256"}
    assert "TLSv1.2 TLS_RSA_WITH_AES_128_CBC_SHA" in problems["no-forward-secrecy"]


def test_expired_leaf_is_a_validation_error_not_a_hostname_problem(fleet: Fleet) -> None:
    cert = fleet.scans["expired"].certificate
    assert cert is not None
    assert not cert.chain_valid and not cert.trusted_ignoring_hostname and cert.hostname_ok
    assert cert.validation_error is not None and "not valid at validation time" in cert.validation_error
    assert cert_problems(cert) == {"expired", "untrusted"}


def test_1024_bit_rsa_leaf_is_a_weak_key(fleet: Fleet) -> None:
    cert = fleet.scans["rsa1024"].certificate
    assert cert is not None and (cert.key_type, cert.key_size) == ("RSA", 1024)
    problems = cert_problems(cert)
    assert "key-weak" in problems and "hostname-mismatch" not in problems


def test_hostname_mismatch_is_told_apart_from_an_untrusted_chain(fleet: Fleet) -> None:
    cert = fleet.scans["mismatch"].certificate
    assert cert is not None
    assert (cert.key_type, cert.key_size) == ("EC", 256)
    assert not cert.chain_valid and not cert.hostname_ok and cert.trusted_ignoring_hostname
    assert cert.validation_error is not None and "subjectAltName" in cert.validation_error
    assert cert_problems(cert) == {"hostname-mismatch"}


def test_unreachable_endpoint_is_not_tested_never_refused(fleet: Fleet) -> None:
    scan = fleet.scans["unreachable"]
    assert not scan.reachable and scan.connectivity_error
    assert set(statuses(scan).values()) == {"not_tested"}
    assert all(p.error and "not reachable" in p.error for p in scan.protocols)
    assert scan.certificate is None and scan.hsts is None and scan.hsts_error
    assert cipher_problems(scan) == {}


def test_unresolvable_host_is_a_connectivity_error() -> None:
    (scan,) = tls.scan([Endpoint("no-such-host.invalid", 443)], TlsScanSettings()).values()
    assert not scan.reachable and "could not resolve" in (scan.connectivity_error or "")
    assert [p.version for p in scan.protocols if p.status == "not_tested"] == list(tls.PROTOCOL_VERSIONS)


def test_scan_once_caches_and_one_host_scans_in_under_five_seconds(pki: Pki) -> None:
    tls.clear_cache()
    settings = TlsScanSettings(ca_bundle=pki.ca_path)
    with serving(Behaviour(), server_context(pki.issue(LOCAL))) as port:
        endpoint = Endpoint(LOCAL, port, LOCAL)
        started = time.monotonic()
        first = tls.scan_once([endpoint], settings)[endpoint]
        elapsed = time.monotonic() - started
        again = tls.scan_once([endpoint, endpoint], settings)
    print(f"\nsingle-host sslyze scan (certificate_info, 6 protocol versions, http_headers): {elapsed:.2f}s")
    assert again == {endpoint: first} and again[endpoint] is first
    assert first.reachable and first.duration_s <= elapsed < MAX_SECONDS_PER_HOST
    tls.clear_cache()


def test_server_requiring_a_client_certificate(pki: Pki) -> None:
    """sslyze counts a handshake that reached CertificateRequest as the suite being accepted, so versions are judged
    even without credentials; what cannot run without a certificate (the HTTP request for HSTS) is not_tested."""
    ctx = server_context(pki.issue(LOCAL))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(pki.ca_path))
    client_cert, client_key = pki.issue("client.example")
    with serving(Behaviour(headers=(("Strict-Transport-Security", "max-age=31536000"),)), ctx) as port:
        endpoint = Endpoint(LOCAL, port, LOCAL)
        without = tls.scan([endpoint], TlsScanSettings(ca_bundle=pki.ca_path))[endpoint]
        with_cert = tls.scan([endpoint], TlsScanSettings(ca_bundle=pki.ca_path, client_cert=client_cert,
                                                         client_key=client_key))[endpoint]
    assert without.client_auth == "REQUIRED"
    assert statuses(without)["TLSv1.2"] == "accepted" and statuses(without)["TLSv1"] == "refused"
    assert without.hsts is None and "CLIENT_CERTIFICATE_NEEDED" in (without.hsts_error or "")
    assert statuses(with_cert) == statuses(without)
    assert with_cert.hsts_error is None and with_cert.hsts == HstsPolicy(31536000)


def test_bad_settings_raise_instead_of_producing_findings(tmp_path: Path) -> None:
    with pytest.raises(tls.TlsScanError):
        tls.scan([Endpoint(LOCAL, closed_port(), LOCAL)], TlsScanSettings(ca_bundle=tmp_path / "missing.pem"))
    with pytest.raises(tls.TlsScanError):
        tls.scan([Endpoint(LOCAL, closed_port(), LOCAL)], TlsScanSettings(client_cert=tmp_path / "c.pem"))


# --------------------------------------------------------------------------------------------------------------------
# Plain http
# --------------------------------------------------------------------------------------------------------------------


def test_plain_http_closed_port_is_refused() -> None:
    result = tls.probe_plain_http(LOCAL, closed_port(), "/fhir/metadata", timeout=2)
    assert result.status == "refused" and not result.data_served


def test_plain_http_redirect_to_https_on_the_same_host() -> None:
    with serving(Behaviour(redirect_to="https://127.0.0.1:8443/fhir/metadata"), None) as port:
        result = tls.probe_plain_http(LOCAL, port, "/fhir/metadata", timeout=2)
    assert (result.status, result.status_code, result.location) == (
        "redirect_to_https", 301, "https://127.0.0.1:8443/fhir/metadata")


@pytest.mark.parametrize("location", ["http://127.0.0.1:{port}/fhir", "https://elsewhere.example/fhir", "/fhir"])
def test_plain_http_redirect_that_keeps_cleartext_or_leaves_the_host(location: str) -> None:
    with serving(Behaviour(redirect_to=location), None) as port:
        result = tls.probe_plain_http(LOCAL, port, "/fhir/metadata", timeout=2)
    assert result.status == "redirect_elsewhere" and not result.data_served


def test_plain_http_serving_fhir_data() -> None:
    with serving(Behaviour(), None) as port:
        result = tls.probe_plain_http(LOCAL, port, "/fhir/metadata", timeout=2)
    assert result.status == "served" and result.data_served and result.status_code == 200
    assert "CapabilityStatement" in result.body_snippet


def test_plain_http_error_answer_serves_nothing() -> None:
    with serving(Behaviour(status=403, body=b'{"error": "https only"}'), None) as port:
        result = tls.probe_plain_http(LOCAL, port, "/", timeout=2)
    assert result.status == "refused" and result.status_code == 403 and not result.data_served


def test_plain_http_against_a_tls_only_port_is_refused(pki: Pki) -> None:
    with serving(Behaviour(), server_context(pki.issue(LOCAL))) as port:
        result = tls.probe_plain_http(LOCAL, port, "/", timeout=2)
    assert result.status == "refused" and not result.data_served


def test_plain_http_timeout_is_could_not_test() -> None:
    with socket.socket() as silent:  # listens, never answers
        silent.bind((LOCAL, 0))
        silent.listen(1)
        result = tls.probe_plain_http(LOCAL, silent.getsockname()[1], "/", timeout=0.3)
    assert result.status == "error" and "timed out" in (result.detail or "")


# --------------------------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------------------------


def test_endpoints_from_urls_distinct_https_host_ports() -> None:
    urls = ["https://fhir.payer.example/r4", "https://auth.payer.example/authorize", "https://auth.payer.example/token",
            "https://auth.payer.example:443/jwks", "https://AUTH.payer.example:8443/introspect",
            "http://fhir.payer.example/r4", None, "", "https://127.0.0.1:9443/fhir"]
    assert tls.endpoints_from_urls(urls) == [
        Endpoint("fhir.payer.example", 443), Endpoint("auth.payer.example", 443),
        Endpoint("auth.payer.example", 8443), Endpoint(LOCAL, 9443, LOCAL)]


@pytest.mark.parametrize(("name", "expected"), [
    ("TLS_AES_128_GCM_SHA256", {"forward_secret": True, "is_aead": True}),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", {"forward_secret": True, "is_aead": True}),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", {"forward_secret": True, "is_aead": True}),
    ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", {"forward_secret": True, "is_aead": False}),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", {"forward_secret": False, "is_aead": False}),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", {"forward_secret": False, "is_aead": True}),
    ("TLS_RSA_WITH_NULL_SHA256", {"is_null": True, "forward_secret": False}),
    ("TLS_RSA_EXPORT_WITH_RC4_40_MD5", {"is_export": True, "is_rc4": True}),
    ("TLS_DH_anon_WITH_AES_128_CBC_SHA", {"is_anonymous": True, "forward_secret": False}),
    ("TLS_ECDH_anon_WITH_AES_128_CBC_SHA", {"is_anonymous": True}),
    ("TLS_RSA_WITH_RC4_128_SHA", {"is_rc4": True, "is_aead": False}),
    ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", {"is_3des": True, "is_des": False, "forward_secret": True}),
    ("TLS_RSA_WITH_DES_CBC_SHA", {"is_des": True, "is_3des": False}),
    ("SSL_CK_DES_192_EDE3_CBC_WITH_MD5", {"is_3des": True, "forward_secret": False}),
    ("ECDHE-RSA-AES128-GCM-SHA256", {"forward_secret": True, "is_aead": True}),
    ("AES128-SHA", {"forward_secret": False}),
    ("ADH-AES128-SHA", {"is_anonymous": True}),
])
def test_classify_cipher(name: str, expected: dict[str, bool]) -> None:
    info = tls.classify_cipher(name)
    assert {k: getattr(info, k) for k in expected} == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("max-age=31536000; includeSubDomains; preload", HstsPolicy(31536000, True, True)),
    ('Max-Age="600"', HstsPolicy(600, False, False)),
    ("includeSubDomains", HstsPolicy(None, True, False)),
    ("max-age=abc", HstsPolicy(None, False, False)),
    ("max-age=1; max-age=2", HstsPolicy(None, False, False)),
])
def test_hsts_from_headers(raw: str, expected: HstsPolicy) -> None:
    import httpx

    got = tls.hsts_from_headers(httpx.Headers([("Strict-Transport-Security", raw), ("Strict-Transport-Security",
                                                                                     "max-age=9")]))
    assert got is not None and (got.max_age, got.include_subdomains, got.preload) == (
        expected.max_age, expected.include_subdomains, expected.preload) and got.raw == raw
    assert tls.hsts_from_headers({"strict-transport-security": raw}) == got
    assert tls.hsts_from_headers([("Content-Type", "text/html")]) is None


def test_hsts_problem() -> None:
    assert policy.hsts_problem(HstsPolicy(63072000, True)) is None
    assert policy.hsts_problem(HstsPolicy(policy.HSTS_MIN_MAX_AGE)) is None
    assert policy.hsts_problem(HstsPolicy(86400)) == f"max-age=86400 is below {policy.HSTS_MIN_MAX_AGE}"
    assert policy.hsts_problem(HstsPolicy(0)) == "Strict-Transport-Security max-age=0 switches HSTS off"
    assert "without a valid max-age: 'max-age=x'" in (policy.hsts_problem(HstsPolicy(None, raw="max-age=x")) or "")


def _cert(now: dt.datetime, *, days_left: int = 300, key: tuple[str, int | None] = ("EC", 256),
          signature_hash: str | None = "sha256") -> CertificateSummary:
    return CertificateSummary(
        subject="CN=h.example", issuer="CN=ca", not_before=now - dt.timedelta(days=300),
        not_after=now + dt.timedelta(days=days_left), key_type=key[0], key_size=key[1],
        signature_hash=signature_hash, san_dns=("*.example",), san_ip=(), chain_valid=True, validation_error=None,
        trust_store="Mozilla", hostname_ok=True, trusted_ignoring_hostname=True, chain_length=2)


def test_certificate_expiring_soon_and_sha1() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert cert_problems(_cert(now, days_left=10, signature_hash="sha1"), now) == {"expiring-soon", "signature-weak"}
    assert cert_problems(_cert(now, days_left=policy.EXPIRY_WARNING_DAYS), now) == set()
    assert policy.validity(_cert(now, days_left=-1), now) == "expired"
    assert not policy.expiring_soon(_cert(now, days_left=-1), now)  # expired is its own, stronger verdict


@pytest.mark.parametrize(("key", "hash_", "key_verdict", "hash_verdict"), [
    (("RSA", 2048), "sha256", "strong", "strong"),
    (("RSA", 1024), "SHA384", "weak", "strong"),
    (("EC", 224), "sha512", "weak", "strong"),
    (("DSA", 2048), "sha256", "weak", "strong"),
    (("Ed25519", 256), None, "strong", "strong"),
    (("EC", 256), None, "strong", "unknown"),
    (("RSA", 4096), "md5", "strong", "weak"),
    (("GOST", 256), "sha1", "unknown", "weak"),
])
def test_key_and_signature_hash_strength(key: tuple[str, int], hash_: str | None, key_verdict: str,
                                         hash_verdict: str) -> None:
    cert = _cert(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), key=key, signature_hash=hash_)
    assert (policy.key_strength(cert), policy.signature_hash_strength(cert)) == (key_verdict, hash_verdict)


def test_cipher_rules() -> None:
    static_cbc, ecdhe_gcm = tls.classify_cipher("AES128-SHA"), tls.classify_cipher("ECDHE-RSA-AES128-GCM-SHA256")
    anon = tls.classify_cipher("TLS_DH_anon_WITH_AES_128_CBC_SHA")
    assert policy.lacks_forward_secrecy(static_cbc) and not policy.lacks_forward_secrecy(ecdhe_gcm)
    assert not policy.lacks_forward_secrecy(anon) and policy.broken_cipher_flags(anon) == ("anonymous",)
    assert policy.lacks_aead("TLSv1.2", (static_cbc,)) and not policy.lacks_aead("TLSv1.2", (static_cbc, ecdhe_gcm))
    assert not policy.lacks_aead("TLSv1.1", (static_cbc,)) and not policy.lacks_aead("TLSv1.2", ())


@pytest.mark.parametrize(("host", "dns", "ip", "ok"), [
    ("api.payer.example", ("*.payer.example",), (), True),
    ("a.b.payer.example", ("*.payer.example",), (), False),
    ("payer.example", ("*.payer.example",), (), False),
    ("API.Payer.Example", ("api.payer.example",), (), True),
    ("127.0.0.1", ("127.0.0.1",), (), False),
    ("127.0.0.1", (), ("127.0.0.1",), True),
    ("::1", (), ("0:0:0:0:0:0:0:1",), True),
])
def test_hostname_matching(host: str, dns: tuple[str, ...], ip: tuple[str, ...], ok: bool) -> None:
    assert tls.hostname_matches(host, dns, ip) is ok
